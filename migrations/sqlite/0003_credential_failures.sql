-- Runtime state: failed credential checks per user and credential (password or PIN), shared by
-- every node so a lockout holds cluster-wide. A row exists only after a failure.
CREATE TABLE credential_failures (
    credential   TEXT   NOT NULL PRIMARY KEY,
    failures     BIGINT NOT NULL,
    locked_until BIGINT NOT NULL,
    updated_at   BIGINT NOT NULL
);
