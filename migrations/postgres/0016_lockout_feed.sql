-- Lockouts on the change feed: a credential locked out (credential_failures.locked_until set)
-- or the record of a locked one removed (`ucm user unlock`, or pruning after the lock expired)
-- is announced on the channel ucm_changes in the writing transaction, so every node drops what
-- it remembers of the credential in memory (a cached success, a source's backoff). Payloads:
--   lockout <unix ms> <locked_until> <credential>
--   unlock <unix ms> <credential>
-- The failures before a lockout and their clearing after a success are not announced: the
-- database decides every check, and they would cost a notification per check.
CREATE INDEX credential_failures_locked ON credential_failures (locked_until);

CREATE FUNCTION ucm_notify_lockout() RETURNS trigger AS $$
BEGIN
    IF TG_OP = 'DELETE' THEN
        IF OLD.locked_until > 0 THEN
            PERFORM pg_notify('ucm_changes', 'unlock '
                || (extract(epoch FROM clock_timestamp()) * 1000)::bigint || ' '
                || OLD.credential);
        END IF;
        RETURN OLD;
    END IF;
    IF NEW.locked_until > 0
        AND (TG_OP = 'INSERT' OR OLD.locked_until IS DISTINCT FROM NEW.locked_until) THEN
        PERFORM pg_notify('ucm_changes', 'lockout '
            || (extract(epoch FROM clock_timestamp()) * 1000)::bigint || ' '
            || NEW.locked_until || ' ' || NEW.credential);
    END IF;
    RETURN NEW;
END
$$ LANGUAGE plpgsql;

CREATE TRIGGER credential_failures_notify AFTER INSERT OR UPDATE OR DELETE ON credential_failures
    FOR EACH ROW EXECUTE FUNCTION ucm_notify_lockout();
