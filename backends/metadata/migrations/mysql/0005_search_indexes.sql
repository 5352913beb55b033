-- Indexes for runs/search (issue 4's latency goals), as migrations/postgres/0005. A filter
-- on a param, tag or metric value joins that row (backends/metadata/sql/tracking_search.py),
-- so:
-- * a param or tag equality can start from its (key, value) entries with the run ids in
--   the index (run_params_key_value of 0001 lacked run_id; this one replaces it),
-- * candidate runs and the metrics to order by are read from covering indexes.
-- A value is a TEXT prefix (see 0001), so a value match still reads the row to recheck it.

ALTER TABLE run_params
    DROP INDEX run_params_key_value,
    ADD INDEX run_params_key_value (`key`, value(480), run_id);
CREATE INDEX run_tags_key_value ON run_tags (`key`, value(480), run_id);
CREATE INDEX metric_series_run_key_value
    ON metric_series (run_id, `key`, latest_value, latest_is_nan);
CREATE INDEX runs_id_experiment ON runs (run_id, experiment_id, lifecycle_stage, start_time);
