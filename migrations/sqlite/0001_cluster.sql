-- The cluster definition, one row per configured object (device, user, partition...).
-- `kind` is the definition's collection name; `position` keeps the definition's order so an
-- export reproduces the file; `body` is the object as JSON.
CREATE TABLE config_objects (
    kind     TEXT    NOT NULL,
    position BIGINT  NOT NULL,
    name     TEXT    NOT NULL,
    body     TEXT    NOT NULL,
    PRIMARY KEY (kind, position)
);
CREATE INDEX config_objects_by_name ON config_objects (kind, name);

-- Facts about the stored definition: its digest (so restarting with the same file skips the
-- import), when and from where it was imported.
CREATE TABLE cluster_meta (
    key   TEXT PRIMARY KEY,
    value TEXT NOT NULL
);
