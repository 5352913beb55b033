-- As migrations/postgres/0006: run_params carries its run's experiment_id, and the (key,
-- value) index leads with it, so a param filter starts from the searched experiments only.
-- One ALTER makes the column NOT NULL and swaps the index (one table rebuild, not two).

ALTER TABLE run_params ADD COLUMN experiment_id BIGINT;
UPDATE run_params JOIN runs ON runs.run_id = run_params.run_id
    SET run_params.experiment_id = runs.experiment_id;
ALTER TABLE run_params
    MODIFY experiment_id BIGINT NOT NULL,
    DROP INDEX run_params_key_value,
    ADD INDEX run_params_experiment_key_value (experiment_id, `key`, value(480), run_id);
