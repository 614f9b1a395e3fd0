-- Extension Mobility Cross Cluster: what each remote cluster last told this one (the remote
-- cluster update), written by whichever node of this cluster asked, so every node and
-- `ucm emcc status` see it. JSON columns: em_service_nodes is ["https://host:port", ...] in
-- the remote's order (at most three); trunk_services is {"pstn-access": ["host:port", ...],
-- "rsvp-agent": [...]} with only the services it enabled. remote_activated is 1 after a
-- successful update and 0 after a failed one (logins to it are unavailable until the next
-- success); last_outcome is "ok" or why the update failed.
CREATE TABLE emcc_remote_clusters (
    cluster_id       TEXT   NOT NULL PRIMARY KEY,
    address          TEXT   NOT NULL,
    version          TEXT,
    em_service_nodes TEXT   NOT NULL,
    trunk_services   TEXT   NOT NULL,
    remote_activated BIGINT NOT NULL,
    last_attempt_at  BIGINT NOT NULL,
    last_success_at  BIGINT,
    last_outcome     TEXT   NOT NULL,
    updated_by       TEXT   NOT NULL
);
