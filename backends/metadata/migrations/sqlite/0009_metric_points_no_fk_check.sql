-- Version 9 replaces PostgreSQL's foreign key from metric_points to metric_series by a
-- delete trigger (migrations/postgres/0009): its per-point check was a third of a
-- log-batch transaction there. SQLite's check costs little beside its single writer, and
-- dropping it would mean rebuilding the table, so nothing changes here; the version exists
-- so both dialects number their schemas alike.

SELECT 1;
