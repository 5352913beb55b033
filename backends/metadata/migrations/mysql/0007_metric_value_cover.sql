-- The (key, latest_value) index of metric_series also carries run_id and latest_is_nan, so
-- a search that starts from a metric's value range (a filter like `metrics.m > 0.5`, or the
-- page of a search ordered by a metric) reads the index alone instead of visiting each
-- matching metric_series row. PostgreSQL's INCLUDE columns become trailing key columns
-- (InnoDB has no INCLUDE); they order nothing a query asks for, and cost only key width.

ALTER TABLE metric_series
    DROP INDEX metric_series_key_value,
    ADD INDEX metric_series_key_value (`key`, latest_value, run_id, latest_is_nan);
