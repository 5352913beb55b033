-- mlgate schema v1 (SQLite). Our own design, not MLflow's alembic schema.
-- Key/value tables keep rowids: MLflow returns params and tags in the order they were logged.
-- Metrics are keyed by a small integer series id (run, key) instead of MLflow's wide
-- (key, timestamp, step, run_uuid, value, is_nan) primary key, whose index bloats
-- (mlflow#12813); the series row also holds the latest value, replacing latest_metrics.

CREATE TABLE experiments (
    experiment_id     INTEGER PRIMARY KEY AUTOINCREMENT,
    workspace         TEXT    NOT NULL DEFAULT 'default',
    name              TEXT    NOT NULL,
    artifact_location TEXT    NOT NULL,
    lifecycle_stage   TEXT    NOT NULL DEFAULT 'active',
    creation_time     INTEGER,
    last_update_time  INTEGER,
    UNIQUE (workspace, name)
);
CREATE INDEX experiments_ws_created ON experiments (workspace, creation_time, experiment_id);

CREATE TABLE experiment_tags (
    experiment_id INTEGER NOT NULL REFERENCES experiments (experiment_id) ON DELETE CASCADE,
    key           TEXT    NOT NULL,
    value         TEXT,
    PRIMARY KEY (experiment_id, key)
);

CREATE TABLE runs (
    run_id          TEXT    PRIMARY KEY,
    experiment_id   INTEGER NOT NULL REFERENCES experiments (experiment_id),
    run_name        TEXT    NOT NULL DEFAULT '',
    user_id         TEXT    NOT NULL DEFAULT '',
    status          TEXT    NOT NULL,
    start_time      INTEGER,
    end_time        INTEGER,
    artifact_uri    TEXT    NOT NULL,
    lifecycle_stage TEXT    NOT NULL DEFAULT 'active',
    deleted_time    INTEGER
);
CREATE INDEX runs_experiment_order ON runs (experiment_id, start_time DESC, run_id);

CREATE TABLE run_params (
    run_id TEXT NOT NULL REFERENCES runs (run_id) ON DELETE CASCADE,
    key    TEXT NOT NULL,
    value  TEXT NOT NULL,
    PRIMARY KEY (run_id, key)
);

CREATE TABLE run_tags (
    run_id TEXT NOT NULL REFERENCES runs (run_id) ON DELETE CASCADE,
    key    TEXT NOT NULL,
    value  TEXT,
    PRIMARY KEY (run_id, key)
);

-- One row per (run, metric key), with that key's latest point.
CREATE TABLE metric_series (
    series_id        INTEGER PRIMARY KEY,
    run_id           TEXT    NOT NULL REFERENCES runs (run_id) ON DELETE CASCADE,
    key              TEXT    NOT NULL,
    latest_value     REAL    NOT NULL,
    latest_is_nan    INTEGER NOT NULL,
    latest_timestamp INTEGER NOT NULL,
    latest_step      INTEGER NOT NULL,
    UNIQUE (run_id, key)
);
CREATE INDEX metric_series_key_value ON metric_series (key, latest_value);

-- Every metric point. The primary key is the history order and the duplicate check.
CREATE TABLE metric_points (
    series_id      INTEGER NOT NULL REFERENCES metric_series (series_id) ON DELETE CASCADE,
    timestamp      INTEGER NOT NULL,
    step           INTEGER NOT NULL,
    value          REAL    NOT NULL,
    is_nan         INTEGER NOT NULL,
    PRIMARY KEY (series_id, timestamp, step, value, is_nan)
) WITHOUT ROWID;

CREATE TABLE datasets (
    dataset_id    INTEGER PRIMARY KEY,
    experiment_id INTEGER NOT NULL REFERENCES experiments (experiment_id) ON DELETE CASCADE,
    name          TEXT    NOT NULL,
    digest        TEXT    NOT NULL,
    source_type   TEXT    NOT NULL,
    source        TEXT    NOT NULL,
    schema        TEXT,
    profile       TEXT,
    UNIQUE (experiment_id, name, digest)
);

CREATE TABLE run_dataset_inputs (
    run_id     TEXT    NOT NULL REFERENCES runs (run_id) ON DELETE CASCADE,
    dataset_id INTEGER NOT NULL REFERENCES datasets (dataset_id) ON DELETE CASCADE,
    position   INTEGER NOT NULL,
    PRIMARY KEY (run_id, dataset_id)
) WITHOUT ROWID;

CREATE TABLE run_dataset_input_tags (
    run_id     TEXT    NOT NULL,
    dataset_id INTEGER NOT NULL,
    key        TEXT    NOT NULL,
    value      TEXT    NOT NULL,
    PRIMARY KEY (run_id, dataset_id, key),
    FOREIGN KEY (run_id, dataset_id) REFERENCES run_dataset_inputs (run_id, dataset_id) ON DELETE CASCADE
);

CREATE TABLE run_model_inputs (
    run_id   TEXT NOT NULL REFERENCES runs (run_id) ON DELETE CASCADE,
    model_id TEXT NOT NULL,
    PRIMARY KEY (run_id, model_id)
) WITHOUT ROWID;

CREATE TABLE run_model_outputs (
    run_id   TEXT    NOT NULL REFERENCES runs (run_id) ON DELETE CASCADE,
    model_id TEXT    NOT NULL,
    step     INTEGER NOT NULL,
    PRIMARY KEY (run_id, model_id)
) WITHOUT ROWID;

-- Registered models carry their workspace from the start; the registry issue fills them.
CREATE TABLE registered_models (
    workspace              TEXT    NOT NULL DEFAULT 'default',
    name                   TEXT    NOT NULL,
    creation_timestamp     INTEGER,
    last_updated_timestamp INTEGER,
    description            TEXT,
    user_id                TEXT,
    PRIMARY KEY (workspace, name)
) WITHOUT ROWID;
