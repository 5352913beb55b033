-- What the artifact sweep (gateway/sweeper.py) needs to tell a live upload from one whose
-- process died: until when each gateway process's last heartbeat vouches for it (its own
-- sweep interval decides, so replicas may differ), and the uploads that leave something in
-- the object store until they finish (S3 multipart uploads, Azure staged blocks), noted
-- before they start and forgotten when they end.
CREATE TABLE mlgate_processes (
    owner        TEXT    PRIMARY KEY,
    host         TEXT    NOT NULL,
    pid          INTEGER NOT NULL,
    started_ms   BIGINT  NOT NULL,
    alive_until_ms BIGINT NOT NULL
);
CREATE TABLE mlgate_uploads (
    upload_id  TEXT   PRIMARY KEY,
    path       TEXT   NOT NULL,
    owner      TEXT   NOT NULL,
    started_ms BIGINT NOT NULL
);
