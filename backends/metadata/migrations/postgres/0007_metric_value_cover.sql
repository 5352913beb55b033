-- The (key, latest_value) index of metric_series also carries run_id and latest_is_nan, so
-- a search that starts from a metric's value range (a filter like `metrics.m > 0.5`, or the
-- page of a search ordered by a metric) reads the index alone instead of visiting each
-- matching metric_series row (5k matching series at 10k runs: 1.4 ms instead of 3 ms).
-- The index is rebuilt, which holds writes to metric_series while it runs.

DROP INDEX metric_series_key_value;
CREATE INDEX metric_series_key_value
    ON metric_series (key, latest_value) INCLUDE (run_id, latest_is_nan);
