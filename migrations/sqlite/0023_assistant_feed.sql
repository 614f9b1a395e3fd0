-- Unified CM Assistant's changes on the change feed (see the PostgreSQL migration). On SQLite
-- there is one node and no feed: the node applies its own changes directly. The index serves
-- the feed hook's resynchronisation (every changed manager) on both backends.
CREATE INDEX assistant_managers_version ON assistant_managers (version);
-- Assistant selection: the manager's chosen assistant (a userid of the manager's assistants),
-- whose proxy line gets the manager's calls first; none: the first assistant of the definition.
ALTER TABLE assistant_managers ADD COLUMN selected_assistant TEXT;
