-- Objects are stored as their protobuf encoding (`body`), with the columns that queries and
-- constraints need beside it. Secrets never appear in `body`: connections keep them sealed
-- (AES-256-GCM) in `sealed`, under the key named by `key_id`.
CREATE TABLE nodes (
    id        TEXT PRIMARY KEY,
    parent_id TEXT,
    body      BLOB NOT NULL
);
CREATE INDEX nodes_parent ON nodes (parent_id);

CREATE TABLE connections (
    id      TEXT PRIMARY KEY,
    node_id TEXT NOT NULL,
    body    BLOB NOT NULL,
    sealed  BLOB NOT NULL,
    key_id  TEXT NOT NULL
);
CREATE INDEX connections_node ON connections (node_id);

CREATE TABLE streams (
    id            TEXT PRIMARY KEY,
    node_id       TEXT NOT NULL,
    connection_id TEXT NOT NULL,
    body          BLOB NOT NULL
);
CREATE INDEX streams_node ON streams (node_id);
CREATE INDEX streams_connection ON streams (connection_id);

CREATE TABLE stream_status (
    stream_id TEXT PRIMARY KEY,
    body      BLOB NOT NULL
);

-- The change feed's outbox: one row per committed change, published to AUDIT_CONTROL in
-- revision order (and the self-audit event, if any, to AUDIT_INGEST), then marked.
CREATE TABLE changes (
    revision  BIGINT PRIMARY KEY,
    body      BLOB NOT NULL,
    audit     BLOB,
    published BIGINT NOT NULL DEFAULT 0
);
CREATE INDEX changes_unpublished ON changes (published, revision);

-- The revision counter. Every write transaction updates this row first, which serialises
-- writers (a row lock in Postgres, the write lock in SQLite).
CREATE TABLE meta (
    key   TEXT PRIMARY KEY,
    value BIGINT NOT NULL
);
INSERT INTO meta (key, value) VALUES ('revision', 0);
