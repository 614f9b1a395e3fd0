-- Extension Mobility Cross Cluster, visiting side: logouts not yet acknowledged by the user's
-- home. A logout at the visiting cluster frees its slot and writes this row in the same
-- transaction; the row goes once the home answered (it freed its own slot), so a home that
-- cannot be reached at logout (or a node that stops in between) is told later, by any node of
-- the visiting cluster. queued_at names the logout: a newer one of the same device replaces it.
CREATE TABLE emcc_pending_logouts (
    device     TEXT   NOT NULL PRIMARY KEY,
    home       TEXT   NOT NULL,
    userid     TEXT   NOT NULL,
    queued_at  BIGINT NOT NULL,
    attempts   BIGINT NOT NULL,
    last_error TEXT   NOT NULL
);
