-- (MariaDB/MySQL DDL; the same schema as postgres/0004_auth.sql.)
-- Authentication, teams (MLflow workspaces), grants and the audit log (issue 7).
-- Booleans are INTEGER 0/1 and times are milliseconds since the epoch, as elsewhere.
-- A grant's resource_id is an experiment id (as text) or a registered model name; its
-- principal is a user id (as text) or a team (workspace) name.
-- Key sizes: user names 255 (auth/names.py), team names 63, model names 256; the grant
-- key (32 + 63 + 256 + 32 + 255 characters) fits 3072 bytes. The audit log records what
-- requests carried, unchecked, so its columns are TEXT and its indexes take prefixes.

CREATE TABLE auth_users (
    user_id       BIGINT       NOT NULL AUTO_INCREMENT,
    username      VARCHAR(255) NOT NULL,
    password_hash TEXT         NOT NULL,
    is_admin      INTEGER      NOT NULL DEFAULT 0,
    created_at    BIGINT       NOT NULL,
    PRIMARY KEY (user_id),
    UNIQUE KEY auth_users_username_key (username)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_nopad_bin ROW_FORMAT=DYNAMIC;

CREATE TABLE auth_workspaces (
    name        VARCHAR(63) NOT NULL,
    description TEXT,
    created_at  BIGINT      NOT NULL,
    PRIMARY KEY (name)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_nopad_bin ROW_FORMAT=DYNAMIC;
INSERT INTO auth_workspaces (name, description, created_at) VALUES ('default', '', 0);

CREATE TABLE auth_team_members (
    workspace VARCHAR(63) NOT NULL,
    user_id   BIGINT      NOT NULL,
    role      TEXT        NOT NULL,
    PRIMARY KEY (workspace, user_id),
    KEY auth_team_members_user (user_id),
    CONSTRAINT auth_team_members_workspace_fkey FOREIGN KEY (workspace)
        REFERENCES auth_workspaces (name) ON DELETE CASCADE,
    CONSTRAINT auth_team_members_user_id_fkey FOREIGN KEY (user_id)
        REFERENCES auth_users (user_id) ON DELETE CASCADE
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_nopad_bin ROW_FORMAT=DYNAMIC;

CREATE TABLE auth_tokens (
    token_id     VARCHAR(64) NOT NULL,
    user_id      BIGINT      NOT NULL,
    name         TEXT        NOT NULL DEFAULT (''),
    digest       TEXT        NOT NULL,
    read_only    INTEGER     NOT NULL DEFAULT 0,
    workspace    TEXT,
    created_at   BIGINT      NOT NULL,
    expires_at   BIGINT,
    last_used_at BIGINT,
    revoked_at   BIGINT,
    PRIMARY KEY (token_id),
    KEY auth_tokens_user (user_id),
    CONSTRAINT auth_tokens_user_id_fkey FOREIGN KEY (user_id)
        REFERENCES auth_users (user_id) ON DELETE CASCADE
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_nopad_bin ROW_FORMAT=DYNAMIC;

CREATE TABLE auth_grants (
    grant_id       BIGINT       NOT NULL AUTO_INCREMENT,
    resource_type  VARCHAR(32)  NOT NULL,
    workspace      VARCHAR(63)  NOT NULL,
    resource_id    VARCHAR(256) NOT NULL,
    principal_type VARCHAR(32)  NOT NULL,
    principal      VARCHAR(255) NOT NULL,
    permission     TEXT         NOT NULL,
    PRIMARY KEY (grant_id),
    UNIQUE KEY auth_grants_resource_type_workspace_resource_id_principal_t_key
        (resource_type, workspace, resource_id, principal_type, principal),
    KEY auth_grants_principal (principal_type, principal)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_nopad_bin ROW_FORMAT=DYNAMIC;

CREATE TABLE audit_log (
    audit_id       BIGINT  NOT NULL AUTO_INCREMENT,
    ts             BIGINT  NOT NULL,
    username       TEXT,
    workspace      TEXT,
    action         TEXT    NOT NULL,
    resource_type  TEXT,
    resource_id    TEXT,
    outcome        TEXT    NOT NULL,
    status         INTEGER,
    client_address TEXT,
    PRIMARY KEY (audit_id),
    KEY audit_log_ts (ts),
    KEY audit_log_user (username(255), ts),
    KEY audit_log_resource (resource_type(32), resource_id(255), ts)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_nopad_bin ROW_FORMAT=DYNAMIC;
