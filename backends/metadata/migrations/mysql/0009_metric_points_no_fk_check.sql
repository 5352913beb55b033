-- Version 9 replaces PostgreSQL's foreign key from metric_points to metric_series by a
-- statement-level delete trigger (migrations/postgres/0009). Here the key stays: MariaDB
-- and MySQL fire no trigger for rows a foreign key's cascade deletes, so deleting a run or
-- an experiment would leave its points behind, and their triggers run once per row. The
-- version exists so every dialect numbers its schema alike.

SELECT 1;
