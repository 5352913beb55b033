-- Version 16 keys metric_series by (run_id, key): InnoDB keeps a table's rows in its primary
-- key, so the series a write or a search looks up by run and key is the row itself, with its
-- latest value. A new latest point rewrites the row and the (key, latest_value) index, no
-- longer also the (run_id, key, latest_value, latest_is_nan) one: MariaDB's CPU per batch of
-- 32 metric writes fell by a quarter (docs/performance.md). series_id stays unique
-- (metric_points' foreign key names it) and AUTO_INCREMENT.
--
-- Replicas of version 15 keep running beside a migrated one during a rolling update, and
-- they name two indexes in their statements: both stay, on (run_id, key) only, which no
-- update of a latest point touches. A later version may drop them.
--
-- The table is rebuilt (concurrent writes continue): on a large database this takes as long
-- as copying it.

ALTER TABLE metric_series
    DROP PRIMARY KEY,
    ADD PRIMARY KEY (run_id, `key`),
    ADD UNIQUE KEY metric_series_id (series_id),
    DROP INDEX metric_series_run_key_value,
    ADD INDEX metric_series_run_key_value (run_id, `key`);
