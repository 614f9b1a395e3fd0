-- Registrations on the change feed: every node learns every other node's bindings (calls
-- across nodes, a second registrant refused cluster-wide). Announced on ucm_changes by a
-- trigger, delivered at commit like the EM changes (0010). Payloads:
--   reg <unix ms> <the row as JSON>         a registration written (insert or refresh)
--   unreg <unix ms> <the old row as JSON>   a registration removed
--   regid <unix ms> {"device":..,"line":..} a registration written whose row does not fit in a
--                                            notification (8000 bytes): receivers read it
-- A removal too long to announce whole goes without its contact (receivers need only the
-- device, line, node and expiry to tell whether it is the binding they hold).
CREATE FUNCTION ucm_notify_registration() RETURNS trigger AS $$
DECLARE
    at_ms  TEXT := (extract(epoch FROM clock_timestamp()) * 1000)::bigint::text;
    body   TEXT;
BEGIN
    IF TG_OP = 'DELETE' THEN
        body := row_to_json(OLD)::text;
        IF octet_length(body) > 7800 THEN
            body := (to_jsonb(OLD) || jsonb_build_object('contact', '', 'instance', NULL))::text;
        END IF;
        PERFORM pg_notify('ucm_changes', 'unreg ' || at_ms || ' ' || body);
        RETURN OLD;
    END IF;
    body := row_to_json(NEW)::text;
    IF octet_length(body) > 7800 THEN
        PERFORM pg_notify('ucm_changes', 'regid ' || at_ms || ' '
            || json_build_object('device', NEW.device, 'line', NEW.line)::text);
    ELSE
        PERFORM pg_notify('ucm_changes', 'reg ' || at_ms || ' ' || body);
    END IF;
    RETURN NEW;
END
$$ LANGUAGE plpgsql;

CREATE TRIGGER registrations_notify AFTER INSERT OR UPDATE OR DELETE ON registrations
    FOR EACH ROW EXECUTE FUNCTION ucm_notify_registration();
