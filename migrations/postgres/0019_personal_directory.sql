-- Personal Directory (IP Phone Services): each end user's own entries, which the user's phones
-- show after a user ID and PIN (the Personal Directory phone service) and which the user keeps
-- with HTTP Basic credentials (/ucm/pd/entries).
CREATE TABLE personal_directory (
    id          TEXT   NOT NULL PRIMARY KEY,
    userid      TEXT   NOT NULL,
    first_name  TEXT   NOT NULL,
    last_name   TEXT   NOT NULL,
    nickname    TEXT   NOT NULL,
    number      TEXT   NOT NULL,
    created_at  BIGINT NOT NULL
);
CREATE INDEX personal_directory_by_user ON personal_directory (userid, last_name, first_name);
