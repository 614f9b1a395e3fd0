-- Service leases: a service the cluster runs once (the Paging Server, as the seed says: one per
-- Unified CM cluster) may be named on several nodes; the node holding its lease is the active
-- one and the others stand by. The holder renews `expires_at` (the database's clock, unix ms)
-- before it passes; once it has passed, any standby may take the lease in one statement (an
-- upsert whose WHERE the database evaluates on the locked row: exactly one taker wins).
-- `route_points` (a JSON array) are the route points the holder serves, so every node sends
-- their calls to it over the intra-cluster trunk.
--
-- A change of holder (taken, handed over, released) is announced on the channel ucm_leases as
--   lease <unix ms> <service>
-- delivered at commit; renewals by the same holder are not announced.
CREATE TABLE service_leases (
    service      TEXT   NOT NULL PRIMARY KEY,
    node         TEXT   NOT NULL,
    instance     TEXT   NOT NULL,
    route_points TEXT   NOT NULL,
    acquired_at  BIGINT NOT NULL,
    expires_at   BIGINT NOT NULL
);

CREATE FUNCTION ucm_notify_lease() RETURNS trigger AS $$
DECLARE
    at_ms TEXT := (extract(epoch FROM clock_timestamp()) * 1000)::bigint::text;
BEGIN
    IF TG_OP = 'DELETE' THEN
        PERFORM pg_notify('ucm_leases', 'lease ' || at_ms || ' ' || OLD.service);
        RETURN OLD;
    END IF;
    IF TG_OP = 'UPDATE' AND OLD.instance = NEW.instance AND OLD.route_points = NEW.route_points THEN
        RETURN NEW;
    END IF;
    PERFORM pg_notify('ucm_leases', 'lease ' || at_ms || ' ' || NEW.service);
    RETURN NEW;
END
$$ LANGUAGE plpgsql;

CREATE TRIGGER service_leases_notify AFTER INSERT OR UPDATE OR DELETE ON service_leases
    FOR EACH ROW EXECUTE FUNCTION ucm_notify_lease();
