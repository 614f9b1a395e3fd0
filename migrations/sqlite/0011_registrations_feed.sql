-- Registrations on the change feed (see the PostgreSQL migration). On SQLite there is one node
-- and no feed: nothing to announce. Kept so both backends number their migrations alike.
SELECT 1;
