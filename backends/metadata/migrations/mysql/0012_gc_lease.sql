-- Garbage collection (mlgate gc, and serve's scheduled sweep) runs in one process at a time
-- for a database: it holds this lease, renewed between batches, so two replicas' sweeps and
-- an operator's gc never delete the same runs side by side. A holder that died lets it
-- expire.
CREATE TABLE mlgate_leases (
    name     VARCHAR(255) NOT NULL,
    holder   TEXT         NOT NULL,
    until_ms BIGINT       NOT NULL,
    PRIMARY KEY (name)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_nopad_bin ROW_FORMAT=DYNAMIC;
