-- Fair sharing between teams: an administrator's request and metric-row limits per
-- workspace (a NULL column takes the server's default setting, 0 is no limit; "caller_"
-- limits apply to each token or user within the workspace). Servers cache the rows and reload
-- them when the limits counter moves.
CREATE TABLE rate_limits (
    workspace                  VARCHAR(63) NOT NULL,
    requests_per_second        DOUBLE,
    rows_per_second            DOUBLE,
    caller_requests_per_second DOUBLE,
    caller_rows_per_second     DOUBLE,
    updated_at                 BIGINT      NOT NULL,
    PRIMARY KEY (workspace),
    CONSTRAINT rate_limits_workspace_fkey FOREIGN KEY (workspace)
        REFERENCES auth_workspaces (name) ON DELETE CASCADE
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_nopad_bin ROW_FORMAT=DYNAMIC;
ALTER TABLE auth_versions ADD COLUMN limits BIGINT NOT NULL DEFAULT 0;
-- The server processes alive now: each enforces 1/N of every limit in its own memory (no
-- database round trip per request), N counted from here. A process writes its row about
-- once a second while limits are in force; a row not written for a few seconds is a process
-- that is gone.
CREATE TABLE live_processes (
    process_id VARCHAR(255) NOT NULL,
    seen_at    BIGINT       NOT NULL,
    PRIMARY KEY (process_id)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_nopad_bin ROW_FORMAT=DYNAMIC;
