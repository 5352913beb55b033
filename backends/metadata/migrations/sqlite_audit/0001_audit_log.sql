-- The audit log's own database on SQLite (<name>-audit.db beside the metadata database),
-- so that its inserts neither wait for nor hold the metadata writer. Same table as the
-- metadata database's audit_log (0004_auth.sql), whose rows move here when first opened.
CREATE TABLE audit_log (
    audit_id       INTEGER PRIMARY KEY,
    ts             INTEGER NOT NULL,
    username       TEXT,
    workspace      TEXT,
    action         TEXT    NOT NULL,
    resource_type  TEXT,
    resource_id    TEXT,
    outcome        TEXT    NOT NULL,
    status         INTEGER,
    client_address TEXT
);
CREATE INDEX audit_log_ts ON audit_log (ts);
CREATE INDEX audit_log_user ON audit_log (username, ts);
CREATE INDEX audit_log_resource ON audit_log (resource_type, resource_id, ts);
