-- Model registry (MariaDB/MySQL DDL; the same schema as postgres/0003_model_registry.sql).
-- Registered models, their versions, tags and aliases (MLflow's T2 API).
-- Everything is keyed by (workspace, name): names are unique per workspace. A rename
-- updates registered_models.name and ON UPDATE CASCADE carries it to every child row.
-- Tag and alias rows have an integer id so they read back in the order they were first
-- set, as stock returns them; an upsert keeps the row (and its place).
-- Deleted versions stay as 'Deleted_Internal' rows with redacted fields, as in stock, so a
-- version number is never handed out twice.
-- Names are VARCHAR(256), stock MLflow's size: (workspace, name, alias) and (workspace,
-- name, version, key) must fit one 3072-byte key. Tag values take MLflow's 100,000
-- characters (MEDIUMTEXT); descriptions have no limit here, so they get the same.

DROP TABLE IF EXISTS registered_models;

CREATE TABLE registered_models (
    workspace              VARCHAR(63)  NOT NULL DEFAULT 'default',
    name                   VARCHAR(256) NOT NULL,
    creation_timestamp     BIGINT       NOT NULL,
    last_updated_timestamp BIGINT       NOT NULL,
    description            MEDIUMTEXT,
    PRIMARY KEY (workspace, name),
    KEY registered_models_updated (workspace, last_updated_timestamp)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_nopad_bin ROW_FORMAT=DYNAMIC;

CREATE TABLE registered_model_tags (
    tag_id    BIGINT       NOT NULL AUTO_INCREMENT,
    workspace VARCHAR(63)  NOT NULL,
    name      VARCHAR(256) NOT NULL,
    `key`     VARCHAR(250) NOT NULL,
    value     MEDIUMTEXT,
    PRIMARY KEY (tag_id),
    UNIQUE KEY registered_model_tags_workspace_name_key_key (workspace, name, `key`),
    KEY registered_model_tags_key (`key`),
    CONSTRAINT registered_model_tags_workspace_name_fkey FOREIGN KEY (workspace, name)
        REFERENCES registered_models (workspace, name) ON UPDATE CASCADE ON DELETE CASCADE
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_nopad_bin ROW_FORMAT=DYNAMIC;

-- run_id is whatever the client sent (not a foreign key): validation's 256 characters.
CREATE TABLE model_versions (
    workspace              VARCHAR(63)  NOT NULL,
    name                   VARCHAR(256) NOT NULL,
    version                INTEGER      NOT NULL,
    creation_timestamp     BIGINT       NOT NULL,
    last_updated_timestamp BIGINT       NOT NULL,
    description            MEDIUMTEXT,
    user_id                TEXT,
    current_stage          TEXT         NOT NULL DEFAULT ('None'),
    source                 TEXT,
    storage_location       TEXT,
    run_id                 VARCHAR(256),
    run_link               TEXT,
    status                 TEXT         NOT NULL DEFAULT ('READY'),
    status_message         TEXT,
    model_id               TEXT,
    PRIMARY KEY (workspace, name, version),
    KEY model_versions_run (run_id),
    KEY model_versions_updated (workspace, last_updated_timestamp),
    CONSTRAINT model_versions_workspace_name_fkey FOREIGN KEY (workspace, name)
        REFERENCES registered_models (workspace, name) ON UPDATE CASCADE ON DELETE CASCADE
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_nopad_bin ROW_FORMAT=DYNAMIC;

CREATE TABLE model_version_tags (
    tag_id    BIGINT       NOT NULL AUTO_INCREMENT,
    workspace VARCHAR(63)  NOT NULL,
    name      VARCHAR(256) NOT NULL,
    version   INTEGER      NOT NULL,
    `key`     VARCHAR(250) NOT NULL,
    value     MEDIUMTEXT,
    PRIMARY KEY (tag_id),
    UNIQUE KEY model_version_tags_workspace_name_version_key_key (workspace, name, version, `key`),
    KEY model_version_tags_key (`key`),
    CONSTRAINT model_version_tags_workspace_name_version_fkey FOREIGN KEY (workspace, name, version)
        REFERENCES model_versions (workspace, name, version) ON UPDATE CASCADE ON DELETE CASCADE
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_nopad_bin ROW_FORMAT=DYNAMIC;

CREATE TABLE registered_model_aliases (
    alias_id  BIGINT       NOT NULL AUTO_INCREMENT,
    workspace VARCHAR(63)  NOT NULL,
    name      VARCHAR(256) NOT NULL,
    alias     VARCHAR(255) NOT NULL,
    version   INTEGER      NOT NULL,
    PRIMARY KEY (alias_id),
    UNIQUE KEY registered_model_aliases_workspace_name_alias_key (workspace, name, alias),
    CONSTRAINT registered_model_aliases_workspace_name_fkey FOREIGN KEY (workspace, name)
        REFERENCES registered_models (workspace, name) ON UPDATE CASCADE ON DELETE CASCADE
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_nopad_bin ROW_FORMAT=DYNAMIC;
