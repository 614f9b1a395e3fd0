-- A cluster of nodes on one database.
--
-- cluster_nodes: one row per running node, kept alive by its heartbeat (unix milliseconds); what
-- `ucm cluster status` reads. status is the node's own figures as JSON (change-feed lag).
--
-- The change feed: every committed EM login or logout (a bump of em_devices.version) and every
-- definition import (cluster_meta's digest) is announced on the channel ucm_changes, in the
-- writing transaction (PostgreSQL delivers a NOTIFY at commit, never for a rollback). Payloads:
--   em <unix ms> <version> <device>
--   def <unix ms> <digest>
-- The timestamp is the database's clock when the change was written: receivers measure the
-- feed's lag from it.
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

CREATE FUNCTION ucm_notify_em() RETURNS trigger AS $$
BEGIN
    PERFORM pg_notify('ucm_changes', 'em '
        || (extract(epoch FROM clock_timestamp()) * 1000)::bigint || ' '
        || NEW.version || ' ' || NEW.device);
    RETURN NEW;
END
$$ LANGUAGE plpgsql;

CREATE TRIGGER em_devices_notify AFTER INSERT OR UPDATE ON em_devices
    FOR EACH ROW EXECUTE FUNCTION ucm_notify_em();

CREATE FUNCTION ucm_notify_definition() RETURNS trigger AS $$
BEGIN
    IF NEW.key = 'digest' THEN
        PERFORM pg_notify('ucm_changes', 'def '
            || (extract(epoch FROM clock_timestamp()) * 1000)::bigint || ' ' || NEW.value);
    END IF;
    RETURN NEW;
END
$$ LANGUAGE plpgsql;

CREATE TRIGGER cluster_meta_notify AFTER INSERT OR UPDATE ON cluster_meta
    FOR EACH ROW EXECUTE FUNCTION ucm_notify_definition();
