-- Unified CM Assistant: each manager's state, set by the manager, an assistant or an operator
-- through the Assistant service's API and read by the service for every call to the manager.
-- A manager without a row has Cisco's initial settings (the column defaults): filtering on,
-- inclusive, empty lists, so every call goes to the assistant.
-- `version` goes up by one with every change: a writer that names the version it read changes
-- the row only if nobody changed it since (the database decides between racing writers).
-- `inclusive_filters` and `exclusive_filters` are JSON arrays of calling-number patterns
-- (`X` one digit, `*` any digits at the start or end).
CREATE TABLE assistant_managers (
    manager           TEXT   NOT NULL PRIMARY KEY,
    dnd               BIGINT NOT NULL DEFAULT 0,
    divert_all        BIGINT NOT NULL DEFAULT 0,
    divert_target     TEXT,
    filter_on         BIGINT NOT NULL DEFAULT 1,
    filter_mode       TEXT   NOT NULL DEFAULT 'inclusive',
    inclusive_filters TEXT   NOT NULL DEFAULT '[]',
    exclusive_filters TEXT   NOT NULL DEFAULT '[]',
    version           BIGINT NOT NULL DEFAULT 0,
    updated_at        BIGINT NOT NULL DEFAULT 0
);
