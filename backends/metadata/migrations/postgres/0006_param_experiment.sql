-- As migrations/sqlite/0006: run_params carries its run's experiment_id, and the (key,
-- value) index leads with it, so a param filter starts from the searched experiments only.

ALTER TABLE run_params ADD COLUMN experiment_id BIGINT;
UPDATE run_params SET experiment_id = runs.experiment_id
    FROM runs WHERE runs.run_id = run_params.run_id;
ALTER TABLE run_params ALTER COLUMN experiment_id SET NOT NULL;
DROP INDEX run_params_key_value;
CREATE INDEX run_params_experiment_key_value
    ON run_params (experiment_id, key, value, run_id);
