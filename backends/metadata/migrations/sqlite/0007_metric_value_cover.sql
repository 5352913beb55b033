-- Version 7 changes PostgreSQL's metric value index (migrations/postgres/0007). SQLite has
-- no such index since version 5 (its searches do not start from a metric's value range),
-- so nothing changes here; the version exists so both dialects number their schemas alike.

SELECT 1;
