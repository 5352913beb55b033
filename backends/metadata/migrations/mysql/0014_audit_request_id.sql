-- The X-Request-Id of the request a record is about, so that a record and the request's
-- access log line (and the client's own logs) can be matched. Records made before have none.
-- A nullable column with no default: InnoDB adds it in place (ALGORITHM=INSTANT).
ALTER TABLE audit_log ADD COLUMN request_id TEXT;
