-- MLflow 3 logged models (m-<hex>): artifacts under <experiment>/models/<id>/artifacts.
-- MariaDB/MySQL twin of migrations/postgres/0002_logged_models.sql. Model ids are generated
-- (34 characters); source_run_id is whatever the client sent, so it gets validation's 256.

CREATE TABLE logged_models (
    model_id                  VARCHAR(64)  NOT NULL,
    experiment_id             BIGINT       NOT NULL,
    name                      TEXT         NOT NULL,
    artifact_location         TEXT         NOT NULL,
    creation_timestamp_ms     BIGINT       NOT NULL,
    last_updated_timestamp_ms BIGINT       NOT NULL,
    status                    TEXT         NOT NULL,
    lifecycle_stage           TEXT         NOT NULL DEFAULT ('active'),
    model_type                TEXT,
    source_run_id             VARCHAR(256),
    status_message            TEXT,
    PRIMARY KEY (model_id),
    KEY logged_models_experiment_order (experiment_id, creation_timestamp_ms DESC, model_id),
    KEY logged_models_source_run (source_run_id),
    CONSTRAINT logged_models_experiment_id_fkey FOREIGN KEY (experiment_id)
        REFERENCES experiments (experiment_id)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_nopad_bin ROW_FORMAT=DYNAMIC;

CREATE TABLE logged_model_params (
    rowid    BIGINT       NOT NULL AUTO_INCREMENT,
    model_id VARCHAR(64)  NOT NULL,
    `key`    VARCHAR(250) NOT NULL,
    value    MEDIUMTEXT   NOT NULL,
    PRIMARY KEY (model_id, `key`),
    KEY (rowid),
    CONSTRAINT logged_model_params_model_id_fkey FOREIGN KEY (model_id)
        REFERENCES logged_models (model_id) ON DELETE CASCADE
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_nopad_bin ROW_FORMAT=DYNAMIC;

CREATE TABLE logged_model_tags (
    rowid    BIGINT       NOT NULL AUTO_INCREMENT,
    model_id VARCHAR(64)  NOT NULL,
    `key`    VARCHAR(250) NOT NULL,
    value    MEDIUMTEXT,
    PRIMARY KEY (model_id, `key`),
    KEY (rowid),
    CONSTRAINT logged_model_tags_model_id_fkey FOREIGN KEY (model_id)
        REFERENCES logged_models (model_id) ON DELETE CASCADE
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_nopad_bin ROW_FORMAT=DYNAMIC;

-- Metric points logged against a model (with the run and dataset they came from).
CREATE TABLE logged_model_metrics (
    model_id       VARCHAR(64)  NOT NULL,
    `key`          VARCHAR(250) NOT NULL,
    timestamp      BIGINT       NOT NULL,
    step           BIGINT       NOT NULL,
    run_id         VARCHAR(32)  NOT NULL,
    value          DOUBLE       NOT NULL,
    is_nan         INTEGER      NOT NULL,
    dataset_name   TEXT,
    dataset_digest TEXT,
    PRIMARY KEY (model_id, `key`, timestamp, step, run_id),
    KEY logged_model_metrics_key (`key`, model_id),
    CONSTRAINT logged_model_metrics_model_id_fkey FOREIGN KEY (model_id)
        REFERENCES logged_models (model_id) ON DELETE CASCADE
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_nopad_bin ROW_FORMAT=DYNAMIC;
