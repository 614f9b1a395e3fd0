-- The node table of a cluster (see the PostgreSQL migration). On SQLite there is one node (a
-- second is refused by a lock on the database file), which keeps its row alive the same way so
-- `ucm cluster status` reads both backends alike. No change feed: the node's own writes are the
-- only ones.
CREATE TABLE cluster_nodes (
    name         TEXT   NOT NULL PRIMARY KEY,
    address      TEXT   NOT NULL,
    services     TEXT   NOT NULL,
    instance     TEXT   NOT NULL,
    pid          BIGINT NOT NULL,
    started_at   BIGINT NOT NULL,
    heartbeat_at BIGINT NOT NULL,
    status       TEXT   NOT NULL
);
