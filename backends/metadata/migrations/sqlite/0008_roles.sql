-- MLflow 3.17's roles (issue 7): a named role in one workspace, its users, and its
-- permissions. A role permission is a grant (auth_grants) whose principal is the role
-- (principal_type 'role', principal = role id as text); its resource_id is an experiment
-- id, a registered model name, or '*' for every one of that type in the role's workspace.
-- A 'workspace' permission (resource_id '*') makes the role's users members (USE) or
-- managers (MANAGE) of the workspace.

CREATE TABLE auth_roles (
    role_id     INTEGER PRIMARY KEY,
    name        TEXT    NOT NULL,
    workspace   TEXT    NOT NULL REFERENCES auth_workspaces (name) ON DELETE CASCADE,
    description TEXT,
    UNIQUE (workspace, name)
);

CREATE TABLE auth_role_users (
    assignment_id INTEGER PRIMARY KEY,
    role_id       INTEGER NOT NULL REFERENCES auth_roles (role_id) ON DELETE CASCADE,
    user_id       INTEGER NOT NULL REFERENCES auth_users (user_id) ON DELETE CASCADE,
    UNIQUE (role_id, user_id)
);
CREATE INDEX auth_role_users_user ON auth_role_users (user_id);
