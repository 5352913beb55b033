-- MLflow 3 logged models (m-<hex>): artifacts under <experiment>/models/<id>/artifacts.
-- PostgreSQL twin of migrations/sqlite/0002_logged_models.sql.

CREATE TABLE logged_models (
    model_id                  TEXT COLLATE "C" PRIMARY KEY,
    experiment_id             BIGINT NOT NULL REFERENCES experiments (experiment_id),
    name                      TEXT COLLATE "C" NOT NULL,
    artifact_location         TEXT COLLATE "C" NOT NULL,
    creation_timestamp_ms     BIGINT NOT NULL,
    last_updated_timestamp_ms BIGINT NOT NULL,
    status                    TEXT COLLATE "C" NOT NULL,
    lifecycle_stage           TEXT COLLATE "C" NOT NULL DEFAULT 'active',
    model_type                TEXT COLLATE "C",
    source_run_id             TEXT COLLATE "C",
    status_message            TEXT COLLATE "C"
);
CREATE INDEX logged_models_experiment_order
    ON logged_models (experiment_id, creation_timestamp_ms DESC, model_id);
CREATE INDEX logged_models_source_run ON logged_models (source_run_id);

CREATE TABLE logged_model_params (
    rowid    BIGINT GENERATED ALWAYS AS IDENTITY,
    model_id TEXT COLLATE "C" NOT NULL REFERENCES logged_models (model_id) ON DELETE CASCADE,
    key      TEXT COLLATE "C" NOT NULL,
    value    TEXT COLLATE "C" NOT NULL,
    PRIMARY KEY (model_id, key)
);

CREATE TABLE logged_model_tags (
    rowid    BIGINT GENERATED ALWAYS AS IDENTITY,
    model_id TEXT COLLATE "C" NOT NULL REFERENCES logged_models (model_id) ON DELETE CASCADE,
    key      TEXT COLLATE "C" NOT NULL,
    value    TEXT COLLATE "C",
    PRIMARY KEY (model_id, key)
);

-- Metric points logged against a model (with the run and dataset they came from).
CREATE TABLE logged_model_metrics (
    model_id       TEXT COLLATE "C" NOT NULL REFERENCES logged_models (model_id) ON DELETE CASCADE,
    key            TEXT COLLATE "C" NOT NULL,
    timestamp      BIGINT NOT NULL,
    step           BIGINT NOT NULL,
    run_id         TEXT COLLATE "C" NOT NULL,
    value          DOUBLE PRECISION NOT NULL,
    is_nan         INTEGER NOT NULL,
    dataset_name   TEXT COLLATE "C",
    dataset_digest TEXT COLLATE "C",
    PRIMARY KEY (model_id, key, timestamp, step, run_id)
);
CREATE INDEX logged_model_metrics_key ON logged_model_metrics (key, model_id);
