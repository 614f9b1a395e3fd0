-- Unified CM Assistant's changes on the change feed (see the PostgreSQL migration). On SQLite
-- there is one node and no feed: the node applies its own changes directly. The index serves
-- the feed hook's resynchronisation (every changed manager) on both backends.
CREATE INDEX assistant_managers_version ON assistant_managers (version);
