-- Authentication, teams (MLflow workspaces), grants and the audit log (issue 7).
-- Booleans are INTEGER 0/1 and times are milliseconds since the epoch, as elsewhere.
-- A grant's resource_id is an experiment id (as text) or a registered model name; its
-- principal is a user id (as text) or a team (workspace) name.

CREATE TABLE auth_users (
    user_id       INTEGER PRIMARY KEY,
    username      TEXT    NOT NULL UNIQUE,
    password_hash TEXT    NOT NULL,
    is_admin      INTEGER NOT NULL DEFAULT 0,
    created_at    INTEGER NOT NULL
);

CREATE TABLE auth_workspaces (
    name        TEXT    PRIMARY KEY,
    description TEXT,
    created_at  INTEGER NOT NULL
);
INSERT INTO auth_workspaces (name, description, created_at) VALUES ('default', '', 0);

CREATE TABLE auth_team_members (
    workspace TEXT    NOT NULL REFERENCES auth_workspaces (name) ON DELETE CASCADE,
    user_id   INTEGER NOT NULL REFERENCES auth_users (user_id) ON DELETE CASCADE,
    role      TEXT    NOT NULL,
    PRIMARY KEY (workspace, user_id)
);
CREATE INDEX auth_team_members_user ON auth_team_members (user_id);

CREATE TABLE auth_tokens (
    token_id     TEXT    PRIMARY KEY,
    user_id      INTEGER NOT NULL REFERENCES auth_users (user_id) ON DELETE CASCADE,
    name         TEXT    NOT NULL DEFAULT '',
    digest       TEXT    NOT NULL,
    read_only    INTEGER NOT NULL DEFAULT 0,
    workspace    TEXT,
    created_at   INTEGER NOT NULL,
    expires_at   INTEGER,
    last_used_at INTEGER,
    revoked_at   INTEGER
);
CREATE INDEX auth_tokens_user ON auth_tokens (user_id);

CREATE TABLE auth_grants (
    grant_id       INTEGER PRIMARY KEY,
    resource_type  TEXT NOT NULL,
    workspace      TEXT NOT NULL,
    resource_id    TEXT NOT NULL,
    principal_type TEXT NOT NULL,
    principal      TEXT NOT NULL,
    permission     TEXT NOT NULL,
    UNIQUE (resource_type, workspace, resource_id, principal_type, principal)
);
CREATE INDEX auth_grants_principal ON auth_grants (principal_type, principal);

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
