-- Model registry: registered models, their versions, tags and aliases (MLflow's T2 API).
-- Everything is keyed by (workspace, name): names are unique per workspace. A rename
-- updates registered_models.name and ON UPDATE CASCADE carries it to every child row.
-- Tag and alias rows have an integer id so they read back in the order they were first
-- set, as stock returns them; an upsert keeps the row (and its place).
-- Deleted versions stay as 'Deleted_Internal' rows with redacted fields, as in stock, so a
-- version number is never handed out twice.

DROP TABLE IF EXISTS registered_models;

CREATE TABLE registered_models (
    workspace              TEXT    NOT NULL DEFAULT 'default',
    name                   TEXT    NOT NULL,
    creation_timestamp     INTEGER NOT NULL,
    last_updated_timestamp INTEGER NOT NULL,
    description            TEXT,
    PRIMARY KEY (workspace, name)
);
CREATE INDEX registered_models_updated ON registered_models (workspace, last_updated_timestamp);

CREATE TABLE registered_model_tags (
    tag_id    INTEGER PRIMARY KEY,
    workspace TEXT    NOT NULL,
    name      TEXT    NOT NULL,
    key       TEXT    NOT NULL,
    value     TEXT,
    UNIQUE (workspace, name, key),
    FOREIGN KEY (workspace, name) REFERENCES registered_models (workspace, name)
        ON UPDATE CASCADE ON DELETE CASCADE
);
CREATE INDEX registered_model_tags_key ON registered_model_tags (key);

CREATE TABLE model_versions (
    workspace              TEXT    NOT NULL,
    name                   TEXT    NOT NULL,
    version                INTEGER NOT NULL,
    creation_timestamp     INTEGER NOT NULL,
    last_updated_timestamp INTEGER NOT NULL,
    description            TEXT,
    user_id                TEXT,
    current_stage          TEXT    NOT NULL DEFAULT 'None',
    source                 TEXT,
    storage_location       TEXT,
    run_id                 TEXT,
    run_link               TEXT,
    status                 TEXT    NOT NULL DEFAULT 'READY',
    status_message         TEXT,
    model_id               TEXT,
    PRIMARY KEY (workspace, name, version),
    FOREIGN KEY (workspace, name) REFERENCES registered_models (workspace, name)
        ON UPDATE CASCADE ON DELETE CASCADE
);
CREATE INDEX model_versions_run ON model_versions (run_id);
CREATE INDEX model_versions_updated ON model_versions (workspace, last_updated_timestamp);

CREATE TABLE model_version_tags (
    tag_id    INTEGER PRIMARY KEY,
    workspace TEXT    NOT NULL,
    name      TEXT    NOT NULL,
    version   INTEGER NOT NULL,
    key       TEXT    NOT NULL,
    value     TEXT,
    UNIQUE (workspace, name, version, key),
    FOREIGN KEY (workspace, name, version) REFERENCES model_versions (workspace, name, version)
        ON UPDATE CASCADE ON DELETE CASCADE
);
CREATE INDEX model_version_tags_key ON model_version_tags (key);

CREATE TABLE registered_model_aliases (
    alias_id  INTEGER PRIMARY KEY,
    workspace TEXT    NOT NULL,
    name      TEXT    NOT NULL,
    alias     TEXT    NOT NULL,
    version   INTEGER NOT NULL,
    UNIQUE (workspace, name, alias),
    FOREIGN KEY (workspace, name) REFERENCES registered_models (workspace, name)
        ON UPDATE CASCADE ON DELETE CASCADE
);
