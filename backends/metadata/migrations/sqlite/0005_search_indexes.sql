-- Indexes for runs/search (issue 4's latency goals). A filter on a param, tag or metric
-- value joins that row (backends/metadata/sql_search.py), so:
-- * a param or tag equality can start the search from its (key, value) entries, with the
--   run ids in the index;
-- * each candidate run is checked, and each metric to order by is read, from covering
--   indexes: no table row is visited for runs or metric_series.

CREATE INDEX run_params_key_value ON run_params (key, value, run_id);
CREATE INDEX run_tags_key_value ON run_tags (key, value, run_id);
CREATE INDEX metric_series_run_key_value
    ON metric_series (run_id, key, latest_value, latest_is_nan);
CREATE INDEX runs_id_experiment ON runs (run_id, experiment_id, lifecycle_stage, start_time);

-- Searches no longer start from a metric's value range on SQLite (sql_search.Dialect
-- .unindexed), so this index only cost a write per metric update.
DROP INDEX metric_series_key_value;
