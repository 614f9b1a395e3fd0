-- Lockouts on the change feed (see the PostgreSQL migration). On SQLite there is one node and
-- no feed; the index serves the status view's list of locked-out users on both backends.
CREATE INDEX credential_failures_locked ON credential_failures (locked_until);
