-- mlgate schema v1 (MariaDB 10.11 / MySQL 8), twin of migrations/postgres/0001_initial.sql.
-- Every table is utf8mb4 with a binary NO PAD collation: names and keys compare and sort by
-- code point, case- and trailing-space-sensitively, as PostgreSQL's "C" collation does
-- (utf8mb4_bin is PAD SPACE and would make 'a' and 'a ' one key).
-- An InnoDB key holds at most 3072 bytes (4 per utf8mb4 character), so keyed text columns
-- are VARCHARs sized to what validation or MLflow admits (run ids 32, keys 250, experiment
-- names 500, workspaces 63, model names 256). Other text is TEXT, or MEDIUMTEXT/LONGTEXT
-- where MLflow's limits exceed 64 KiB; an index on a TEXT column takes a prefix of it.
-- Key/value tables keep PostgreSQL's rowid (insertion order, read ORDER BY rowid); an
-- AUTO_INCREMENT column must lead an index, hence KEY (rowid) beside the natural key.
-- The Default experiment is inserted with the explicit id 0, which needs the session's
-- NO_AUTO_VALUE_ON_ZERO; the next experiment then gets 1.
-- A TEXT column's default is written as an expression, the only form MySQL 8 accepts.

CREATE TABLE experiments (
    experiment_id     BIGINT       NOT NULL AUTO_INCREMENT,
    workspace         VARCHAR(63)  NOT NULL DEFAULT 'default',
    name              VARCHAR(500) NOT NULL,
    artifact_location TEXT         NOT NULL,
    lifecycle_stage   TEXT         NOT NULL DEFAULT ('active'),
    creation_time     BIGINT,
    last_update_time  BIGINT,
    PRIMARY KEY (experiment_id),
    UNIQUE KEY experiments_workspace_name_key (workspace, name),
    KEY experiments_ws_created (workspace, creation_time, experiment_id)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_nopad_bin ROW_FORMAT=DYNAMIC;

CREATE TABLE experiment_tags (
    rowid         BIGINT       NOT NULL AUTO_INCREMENT,
    experiment_id BIGINT       NOT NULL,
    `key`         VARCHAR(250) NOT NULL,
    value         MEDIUMTEXT,
    PRIMARY KEY (experiment_id, `key`),
    KEY (rowid),
    CONSTRAINT experiment_tags_experiment_id_fkey FOREIGN KEY (experiment_id)
        REFERENCES experiments (experiment_id) ON DELETE CASCADE
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_nopad_bin ROW_FORMAT=DYNAMIC;

CREATE TABLE runs (
    run_id          VARCHAR(32) NOT NULL,
    experiment_id   BIGINT      NOT NULL,
    run_name        TEXT        NOT NULL DEFAULT (''),
    user_id         TEXT        NOT NULL DEFAULT (''),
    status          TEXT        NOT NULL,
    start_time      BIGINT,
    end_time        BIGINT,
    artifact_uri    TEXT        NOT NULL,
    lifecycle_stage VARCHAR(32) NOT NULL DEFAULT 'active',
    deleted_time    BIGINT,
    PRIMARY KEY (run_id),
    KEY runs_experiment_order (experiment_id, start_time DESC, run_id),
    CONSTRAINT runs_experiment_id_fkey FOREIGN KEY (experiment_id)
        REFERENCES experiments (experiment_id)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_nopad_bin ROW_FORMAT=DYNAMIC;

-- value(480): with the key, and the run_id and experiment_id that 0005 and 0006 add, the
-- index stays within 3072 bytes.
CREATE TABLE run_params (
    rowid  BIGINT       NOT NULL AUTO_INCREMENT,
    run_id VARCHAR(32)  NOT NULL,
    `key`  VARCHAR(250) NOT NULL,
    value  TEXT         NOT NULL,
    PRIMARY KEY (run_id, `key`),
    KEY (rowid),
    KEY run_params_key_value (`key`, value(480)),
    CONSTRAINT run_params_run_id_fkey FOREIGN KEY (run_id)
        REFERENCES runs (run_id) ON DELETE CASCADE
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_nopad_bin ROW_FORMAT=DYNAMIC;

CREATE TABLE run_tags (
    rowid  BIGINT       NOT NULL AUTO_INCREMENT,
    run_id VARCHAR(32)  NOT NULL,
    `key`  VARCHAR(250) NOT NULL,
    value  TEXT,
    PRIMARY KEY (run_id, `key`),
    KEY (rowid),
    CONSTRAINT run_tags_run_id_fkey FOREIGN KEY (run_id)
        REFERENCES runs (run_id) ON DELETE CASCADE
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_nopad_bin ROW_FORMAT=DYNAMIC;

-- One row per (run, metric key), with that key's latest point.
CREATE TABLE metric_series (
    series_id        BIGINT       NOT NULL AUTO_INCREMENT,
    run_id           VARCHAR(32)  NOT NULL,
    `key`            VARCHAR(250) NOT NULL,
    latest_value     DOUBLE       NOT NULL,
    latest_is_nan    INTEGER      NOT NULL,
    latest_timestamp BIGINT       NOT NULL,
    latest_step      BIGINT       NOT NULL,
    PRIMARY KEY (series_id),
    UNIQUE KEY metric_series_run_id_key_key (run_id, `key`),
    KEY metric_series_key_value (`key`, latest_value),
    CONSTRAINT metric_series_run_id_fkey FOREIGN KEY (run_id)
        REFERENCES runs (run_id) ON DELETE CASCADE
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_nopad_bin ROW_FORMAT=DYNAMIC;

-- Every metric point. The primary key is the history order and the duplicate check.
CREATE TABLE metric_points (
    series_id BIGINT  NOT NULL,
    timestamp BIGINT  NOT NULL,
    step      BIGINT  NOT NULL,
    value     DOUBLE  NOT NULL,
    is_nan    INTEGER NOT NULL,
    PRIMARY KEY (series_id, timestamp, step, value, is_nan),
    CONSTRAINT metric_points_series_id_fkey FOREIGN KEY (series_id)
        REFERENCES metric_series (series_id) ON DELETE CASCADE
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_nopad_bin ROW_FORMAT=DYNAMIC;

-- MLflow's limits: source 65,535 and schema 1,048,575 characters (MEDIUMTEXT), profile
-- 16,777,215 characters, more bytes than MEDIUMTEXT holds (LONGTEXT).
CREATE TABLE datasets (
    dataset_id    BIGINT       NOT NULL AUTO_INCREMENT,
    experiment_id BIGINT       NOT NULL,
    name          VARCHAR(500) NOT NULL,
    digest        VARCHAR(36)  NOT NULL,
    source_type   TEXT         NOT NULL,
    source        MEDIUMTEXT   NOT NULL,
    `schema`      MEDIUMTEXT,
    profile       LONGTEXT,
    PRIMARY KEY (dataset_id),
    UNIQUE KEY datasets_experiment_id_name_digest_key (experiment_id, name, digest),
    CONSTRAINT datasets_experiment_id_fkey FOREIGN KEY (experiment_id)
        REFERENCES experiments (experiment_id) ON DELETE CASCADE
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_nopad_bin ROW_FORMAT=DYNAMIC;

-- The dataset_id key backs the foreign key (InnoDB wants an index leading with it).
CREATE TABLE run_dataset_inputs (
    run_id     VARCHAR(32) NOT NULL,
    dataset_id BIGINT      NOT NULL,
    position   INTEGER     NOT NULL,
    PRIMARY KEY (run_id, dataset_id),
    KEY run_dataset_inputs_dataset (dataset_id),
    CONSTRAINT run_dataset_inputs_run_id_fkey FOREIGN KEY (run_id)
        REFERENCES runs (run_id) ON DELETE CASCADE,
    CONSTRAINT run_dataset_inputs_dataset_id_fkey FOREIGN KEY (dataset_id)
        REFERENCES datasets (dataset_id) ON DELETE CASCADE
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_nopad_bin ROW_FORMAT=DYNAMIC;

CREATE TABLE run_dataset_input_tags (
    rowid      BIGINT       NOT NULL AUTO_INCREMENT,
    run_id     VARCHAR(32)  NOT NULL,
    dataset_id BIGINT       NOT NULL,
    `key`      VARCHAR(255) NOT NULL,
    value      TEXT         NOT NULL,
    PRIMARY KEY (run_id, dataset_id, `key`),
    KEY (rowid),
    CONSTRAINT run_dataset_input_tags_run_id_dataset_id_fkey FOREIGN KEY (run_id, dataset_id)
        REFERENCES run_dataset_inputs (run_id, dataset_id) ON DELETE CASCADE
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_nopad_bin ROW_FORMAT=DYNAMIC;

CREATE TABLE run_model_inputs (
    run_id   VARCHAR(32) NOT NULL,
    model_id VARCHAR(64) NOT NULL,
    PRIMARY KEY (run_id, model_id),
    CONSTRAINT run_model_inputs_run_id_fkey FOREIGN KEY (run_id)
        REFERENCES runs (run_id) ON DELETE CASCADE
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_nopad_bin ROW_FORMAT=DYNAMIC;

CREATE TABLE run_model_outputs (
    run_id   VARCHAR(32) NOT NULL,
    model_id VARCHAR(64) NOT NULL,
    step     BIGINT      NOT NULL,
    PRIMARY KEY (run_id, model_id),
    CONSTRAINT run_model_outputs_run_id_fkey FOREIGN KEY (run_id)
        REFERENCES runs (run_id) ON DELETE CASCADE
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_nopad_bin ROW_FORMAT=DYNAMIC;

-- Registered models carry their workspace from the start; 0003 replaces this table.
CREATE TABLE registered_models (
    workspace              VARCHAR(63)  NOT NULL DEFAULT 'default',
    name                   VARCHAR(256) NOT NULL,
    creation_timestamp     BIGINT,
    last_updated_timestamp BIGINT,
    description            TEXT,
    user_id                TEXT,
    PRIMARY KEY (workspace, name)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_nopad_bin ROW_FORMAT=DYNAMIC;
