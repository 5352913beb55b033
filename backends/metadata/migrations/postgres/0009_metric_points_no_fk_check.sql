-- Metric points lose their foreign key to metric_series; a trigger keeps its ON DELETE
-- CASCADE. The batcher inserts points with a join on metric_series in the same statement
-- and transaction as the series upsert, so every point names an existing series, and the
-- key's check (one lookup per inserted point) was a third of a log-batch transaction's
-- time: a batch of 5,000 points took 45-49 ms with it and 31-32 ms without.
--
-- Deleting series (directly, or through the cascade from runs and experiments) still
-- deletes their points, once per statement, through the deleted rows' transition table.

ALTER TABLE metric_points DROP CONSTRAINT metric_points_series_id_fkey;

CREATE FUNCTION mlgate_metric_series_deleted() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    DELETE FROM metric_points p USING gone g WHERE p.series_id = g.series_id;
    RETURN NULL;
END
$$;

CREATE TRIGGER metric_series_deleted AFTER DELETE ON metric_series
    REFERENCING OLD TABLE AS gone
    FOR EACH STATEMENT EXECUTE FUNCTION mlgate_metric_series_deleted();
