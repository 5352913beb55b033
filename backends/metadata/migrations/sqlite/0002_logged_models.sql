-- MLflow 3 logged models (m-<hex>): artifacts under <experiment>/models/<id>/artifacts.

CREATE TABLE logged_models (
    model_id                  TEXT    PRIMARY KEY,
    experiment_id             INTEGER NOT NULL REFERENCES experiments (experiment_id),
    name                      TEXT    NOT NULL,
    artifact_location         TEXT    NOT NULL,
    creation_timestamp_ms     INTEGER NOT NULL,
    last_updated_timestamp_ms INTEGER NOT NULL,
    status                    TEXT    NOT NULL,
    lifecycle_stage           TEXT    NOT NULL DEFAULT 'active',
    model_type                TEXT,
    source_run_id             TEXT,
    status_message            TEXT
);
CREATE INDEX logged_models_experiment_order
    ON logged_models (experiment_id, creation_timestamp_ms DESC, model_id);
CREATE INDEX logged_models_source_run ON logged_models (source_run_id);

CREATE TABLE logged_model_params (
    model_id TEXT NOT NULL REFERENCES logged_models (model_id) ON DELETE CASCADE,
    key      TEXT NOT NULL,
    value    TEXT NOT NULL,
    PRIMARY KEY (model_id, key)
);

CREATE TABLE logged_model_tags (
    model_id TEXT NOT NULL REFERENCES logged_models (model_id) ON DELETE CASCADE,
    key      TEXT NOT NULL,
    value    TEXT,
    PRIMARY KEY (model_id, key)
);

-- Metric points logged against a model (with the run and dataset they came from).
CREATE TABLE logged_model_metrics (
    model_id       TEXT    NOT NULL REFERENCES logged_models (model_id) ON DELETE CASCADE,
    key            TEXT    NOT NULL,
    timestamp      INTEGER NOT NULL,
    step           INTEGER NOT NULL,
    run_id         TEXT    NOT NULL,
    value          REAL    NOT NULL,
    is_nan         INTEGER NOT NULL,
    dataset_name   TEXT,
    dataset_digest TEXT,
    PRIMARY KEY (model_id, key, timestamp, step, run_id)
);
CREATE INDEX logged_model_metrics_key ON logged_model_metrics (key, model_id);
