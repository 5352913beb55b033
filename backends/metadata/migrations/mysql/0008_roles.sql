-- (MariaDB/MySQL DDL; the same schema as postgres/0008_roles.sql.)
-- MLflow 3.17's roles (issue 7): a named role in one workspace, its users, and its
-- permissions. A role permission is a grant (auth_grants) whose principal is the role
-- (principal_type 'role', principal = role id as text); its resource_id is an experiment
-- id, a registered model name, or '*' for every one of that type in the role's workspace.
-- A 'workspace' permission (resource_id '*') makes the role's users members (USE) or
-- managers (MANAGE) of the workspace.

CREATE TABLE auth_roles (
    role_id     BIGINT       NOT NULL AUTO_INCREMENT,
    name        VARCHAR(255) NOT NULL,
    workspace   VARCHAR(63)  NOT NULL,
    description TEXT,
    PRIMARY KEY (role_id),
    UNIQUE KEY auth_roles_workspace_name_key (workspace, name),
    CONSTRAINT auth_roles_workspace_fkey FOREIGN KEY (workspace)
        REFERENCES auth_workspaces (name) ON DELETE CASCADE
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_nopad_bin ROW_FORMAT=DYNAMIC;

CREATE TABLE auth_role_users (
    assignment_id BIGINT NOT NULL AUTO_INCREMENT,
    role_id       BIGINT NOT NULL,
    user_id       BIGINT NOT NULL,
    PRIMARY KEY (assignment_id),
    UNIQUE KEY auth_role_users_role_id_user_id_key (role_id, user_id),
    KEY auth_role_users_user (user_id),
    CONSTRAINT auth_role_users_role_id_fkey FOREIGN KEY (role_id)
        REFERENCES auth_roles (role_id) ON DELETE CASCADE,
    CONSTRAINT auth_role_users_user_id_fkey FOREIGN KEY (user_id)
        REFERENCES auth_users (user_id) ON DELETE CASCADE
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_nopad_bin ROW_FORMAT=DYNAMIC;
