-- Every server process caches users, tokens, memberships and grants. A write to the auth
-- tables adds one to the counter of what it changed, in its own transaction, and each
-- process reads this row a few times a second and drops what a changed counter makes stale:
-- a change made by another worker or by the mlgate CLI reaches every process at once,
-- without a short cache lifetime. One row, so that a write takes one lock whatever it bumps.
CREATE TABLE auth_versions (
    id          INTEGER PRIMARY KEY CHECK (id = 1),
    credentials BIGINT  NOT NULL DEFAULT 0,  -- passwords, deleted users, revoked tokens
    identities  BIGINT  NOT NULL DEFAULT 0,  -- admin flags, team members, roles
    grants      BIGINT  NOT NULL DEFAULT 0,  -- grants and role permissions
    workspaces  BIGINT  NOT NULL DEFAULT 0   -- teams created or deleted
);
INSERT INTO auth_versions (id) VALUES (1);
