-- Extension Mobility: who is logged in where, and until when. A row is one login; logging out
-- deletes it in the same transaction that records the device's last user, so a crash leaves a
-- device either logged in or not. logout_at (unix seconds) is the automatic logout, kept here so
-- it still fires after a restart; NULL means until logout.
CREATE TABLE em_logins (
    device       TEXT   NOT NULL PRIMARY KEY,
    userid       TEXT   NOT NULL,
    profile      TEXT   NOT NULL,
    logged_in_at BIGINT NOT NULL,
    logout_at    BIGINT,
    node         TEXT   NOT NULL
);
CREATE INDEX em_logins_by_user ON em_logins (userid);
CREATE INDEX em_logins_by_logout ON em_logins (logout_at);
CREATE TABLE em_last_user (
    device TEXT NOT NULL PRIMARY KEY,
    userid TEXT NOT NULL
);
