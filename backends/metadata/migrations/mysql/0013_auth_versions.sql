-- Every server process caches users, tokens, memberships and grants. A write to the auth
-- tables adds one to the counter of what it changed, in its own transaction, and each
-- process reads this row a few times a second and drops what a changed counter makes stale:
-- a change made by another worker or by the mlgate CLI reaches every process at once,
-- without a short cache lifetime. One row, so that a write takes one lock whatever it bumps.
-- CHECK constraints are enforced from MariaDB 10.2 and MySQL 8.0.16.
CREATE TABLE auth_versions (
    id          INTEGER NOT NULL,
    credentials BIGINT  NOT NULL DEFAULT 0,  -- passwords, deleted users, revoked tokens
    identities  BIGINT  NOT NULL DEFAULT 0,  -- admin flags, team members, roles
    grants      BIGINT  NOT NULL DEFAULT 0,  -- grants and role permissions
    workspaces  BIGINT  NOT NULL DEFAULT 0,  -- teams created or deleted
    PRIMARY KEY (id),
    CONSTRAINT auth_versions_id_check CHECK (id = 1)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_nopad_bin ROW_FORMAT=DYNAMIC;
INSERT INTO auth_versions (id) VALUES (1);
