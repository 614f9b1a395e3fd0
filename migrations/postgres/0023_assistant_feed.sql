-- Unified CM Assistant: every change of a manager's state (a bump of assistant_managers.version)
-- is announced on the change feed, in the writing transaction, so every node applies it at once:
-- silent ring in shared line mode follows DND on whichever node a phone is registered with, and
-- every node's Assistant Consoles hear of the change. Payload:
--   assistant <unix ms> <version> <manager>
CREATE FUNCTION ucm_notify_assistant() RETURNS trigger AS $$
BEGIN
    PERFORM pg_notify('ucm_changes', 'assistant '
        || (extract(epoch FROM clock_timestamp()) * 1000)::bigint || ' '
        || NEW.version || ' ' || NEW.manager);
    RETURN NEW;
END
$$ LANGUAGE plpgsql;

CREATE TRIGGER assistant_managers_notify AFTER UPDATE ON assistant_managers
    FOR EACH ROW EXECUTE FUNCTION ucm_notify_assistant();

CREATE INDEX assistant_managers_version ON assistant_managers (version);
-- Assistant selection: the manager's chosen assistant (a userid of the manager's assistants),
-- whose proxy line gets the manager's calls first; none: the first assistant of the definition.
ALTER TABLE assistant_managers ADD COLUMN selected_assistant TEXT;
