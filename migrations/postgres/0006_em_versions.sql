-- Extension Mobility decided by the database, and every node's view of it never going back.
--
-- em_devices: one row per device that ever had an EM login, with a version that every login or
-- logout of the device bumps in its own transaction. The row lock this takes orders the
-- device's changes; a node applies a device's state only when its version is newer than the one
-- it holds, so a snapshot read before a commit can never undo that commit in memory. A logged
-- out device keeps its row (its version is the "logged out" state's).
--
-- em_user_locks: one row per user that ever logged in; a login takes it first, so that logins of
-- one user are decided one after another (Multiple Login Behavior) on PostgreSQL as on SQLite.
CREATE TABLE em_devices (
    device  TEXT   NOT NULL PRIMARY KEY,
    version BIGINT NOT NULL
);
CREATE TABLE em_user_locks (
    userid TEXT   NOT NULL PRIMARY KEY,
    logins BIGINT NOT NULL
);
INSERT INTO em_devices (device, version) SELECT device, 1 FROM em_logins;
INSERT INTO em_devices (device, version)
    SELECT device, 1 FROM em_last_user WHERE device NOT IN (SELECT device FROM em_logins);
