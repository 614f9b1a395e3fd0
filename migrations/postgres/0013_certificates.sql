-- Certificates for trust between clusters (Extension Mobility Cross Cluster).
-- node_certificates: what each node presents, written by the node at start, so any node can
-- export the whole cluster's certificates. purpose: tomcat (HTTPS) or callmanager (SIP TLS).
CREATE TABLE node_certificates (
    node        TEXT   NOT NULL,
    purpose     TEXT   NOT NULL,
    fingerprint TEXT   NOT NULL,
    pem         TEXT   NOT NULL,
    updated_at  BIGINT NOT NULL,
    PRIMARY KEY (node, purpose)
);
-- trusted_certificates: other clusters' certificates imported from a consolidated bundle, by
-- trust store (tomcat-trust, callmanager-trust, phone-sast-trust, as Cisco maps them). An
-- import replaces what the same source cluster had in each store.
CREATE TABLE trusted_certificates (
    trust_store    TEXT   NOT NULL,
    fingerprint    TEXT   NOT NULL,
    source_cluster TEXT   NOT NULL,
    source_node    TEXT   NOT NULL,
    purpose        TEXT   NOT NULL,
    pem            TEXT   NOT NULL,
    imported_at    BIGINT NOT NULL,
    PRIMARY KEY (trust_store, fingerprint)
);
