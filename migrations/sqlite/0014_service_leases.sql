-- Service leases (see the PostgreSQL migration 0014): which node runs a service the cluster
-- runs once (the Paging Server). On SQLite there is one node, which always holds them.
CREATE TABLE service_leases (
    service      TEXT   NOT NULL PRIMARY KEY,
    node         TEXT   NOT NULL,
    instance     TEXT   NOT NULL,
    route_points TEXT   NOT NULL,
    acquired_at  BIGINT NOT NULL,
    expires_at   BIGINT NOT NULL
);
