-- Extension Mobility Cross Cluster, visiting side: logouts not yet acknowledged by the user's
-- home. A logout at the visiting cluster frees its slot and writes this row in the same
-- transaction; the row goes once the home answered (it freed its own slot), so a home that
-- cannot be reached at logout (or a node that stops in between) is told later, by any node of
-- the visiting cluster. queued_at names the logout: a newer one of the same device replaces it.
CREATE TABLE emcc_pending_logouts (
    device     TEXT   NOT NULL PRIMARY KEY,
    home       TEXT   NOT NULL,
    userid     TEXT   NOT NULL,
    queued_at  BIGINT NOT NULL,
    attempts   BIGINT NOT NULL,
    last_error TEXT   NOT NULL
);

-- EMCC devices on the change feed: a login or logout of an EMCC device, on either side, is
-- announced on the channel ucm_changes in the writing transaction, so every node of a cluster
-- on this database serves it: the home's nodes add or drop the run-time device (the phone may
-- register with any of them, and the one it is registered with resets it at logout), the
-- visiting side's nodes start or stop serving the small configuration. Payload:
--   emcc <unix ms> <role> <device>
-- (the row is read again by the node that hears it; on SQLite there is one node and no feed).
CREATE FUNCTION ucm_notify_emcc_device() RETURNS trigger AS $$
DECLARE
    r emcc_devices%ROWTYPE;
BEGIN
    IF TG_OP = 'DELETE' THEN
        r := OLD;
    ELSE
        r := NEW;
    END IF;
    PERFORM pg_notify('ucm_changes', 'emcc '
        || (extract(epoch FROM clock_timestamp()) * 1000)::bigint || ' '
        || r.role || ' ' || r.device);
    RETURN NULL;
END
$$ LANGUAGE plpgsql;

CREATE TRIGGER emcc_devices_notify AFTER INSERT OR UPDATE OR DELETE ON emcc_devices
    FOR EACH ROW EXECUTE FUNCTION ucm_notify_emcc_device();
