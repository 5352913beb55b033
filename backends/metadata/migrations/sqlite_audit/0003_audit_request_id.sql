-- The X-Request-Id of the request a record is about, so that a record and the request's
-- access log line (and the client's own logs) can be matched. Records made before have none.
ALTER TABLE audit_log ADD COLUMN request_id TEXT;
