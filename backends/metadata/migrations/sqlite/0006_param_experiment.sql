-- A param filter in runs/search starts from the searched experiments' params only (issue 4's
-- 10k-run goal): run_params carries its run's experiment_id (runs never change experiment),
-- and the (key, value) index leads with it. Before, `params.p = 'v3'` walked that param of
-- every experiment and then looked each run up.

ALTER TABLE run_params ADD COLUMN experiment_id INTEGER;
UPDATE run_params SET experiment_id =
    (SELECT runs.experiment_id FROM runs WHERE runs.run_id = run_params.run_id);
DROP INDEX run_params_key_value;
CREATE INDEX run_params_experiment_key_value
    ON run_params (experiment_id, key, value, run_id);
