-- Extension Mobility Cross Cluster: the EMCC logged-in devices, one row per device and side.
-- role 'visiting': a phone of this cluster that a user of remote_cluster (the home) is logged
-- in on; role 'home': a phone of remote_cluster (the visiting cluster) that a user of this
-- cluster is logged in on, which this cluster builds a configuration for and registers.
-- slot is the EMCC device slot the login holds (1 to emcc.max_emcc_devices, shown as EMCC<n>,
-- Cisco's dummy devices): the unique (role, slot) is what makes the cap hold however many
-- logins race for the last slot. profile is the user's device profile (home side; empty at
-- the visiting side). settings is JSON: at the home, the visiting device's settings it sent;
-- at the visiting side, the home's answer (its TFTP servers and call-control node).
CREATE TABLE emcc_devices (
    role           TEXT   NOT NULL,
    device         TEXT   NOT NULL,
    slot           BIGINT NOT NULL,
    userid         TEXT   NOT NULL,
    remote_cluster TEXT   NOT NULL,
    profile        TEXT   NOT NULL,
    settings       TEXT   NOT NULL,
    logged_in_at   BIGINT NOT NULL,
    node           TEXT   NOT NULL,
    PRIMARY KEY (role, device),
    UNIQUE (role, slot)
);
