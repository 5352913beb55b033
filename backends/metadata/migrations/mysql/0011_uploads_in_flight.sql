-- What the artifact sweep (gateway/sweeper.py) needs to tell a live upload from one whose
-- process died: until when each gateway process's last heartbeat vouches for it (its own
-- sweep interval decides, so replicas may differ), and the uploads that leave something in
-- the object store until they finish (S3 multipart uploads, Azure staged blocks), noted
-- before they start and forgotten when they end.
-- Upload ids are the object store's, of no fixed length: the key gets its whole 768.
CREATE TABLE mlgate_processes (
    owner          VARCHAR(255) NOT NULL,
    host           TEXT         NOT NULL,
    pid            INTEGER      NOT NULL,
    started_ms     BIGINT       NOT NULL,
    alive_until_ms BIGINT       NOT NULL,
    PRIMARY KEY (owner)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_nopad_bin ROW_FORMAT=DYNAMIC;
CREATE TABLE mlgate_uploads (
    upload_id  VARCHAR(768) NOT NULL,
    path       TEXT         NOT NULL,
    owner      TEXT         NOT NULL,
    started_ms BIGINT       NOT NULL,
    PRIMARY KEY (upload_id)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_nopad_bin ROW_FORMAT=DYNAMIC;
