-- Runtime state: where each registered line of a device can be reached. Kept across restarts
-- so a restarted node routes calls at once; rows past expires_at are stale and ignored.
CREATE TABLE registrations (
    device     TEXT   NOT NULL,
    line       TEXT   NOT NULL,
    contact    TEXT   NOT NULL,
    instance   TEXT,
    transport  TEXT   NOT NULL,
    source     TEXT   NOT NULL,
    node       TEXT   NOT NULL,
    expires_at BIGINT NOT NULL,
    updated_at BIGINT NOT NULL,
    PRIMARY KEY (device, line)
);
CREATE INDEX registrations_by_line ON registrations (line);
