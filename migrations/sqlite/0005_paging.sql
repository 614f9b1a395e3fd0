-- Paging: the secret the paging service presents for its user in pushes to phones (a SHA-256 of
-- a random 256-bit secret made at the paging node's start, so any node's authentication URL can
-- check it), and the reports of finished pages (who joined, who failed and why), as JSON.
CREATE TABLE service_credentials (
    userid        TEXT   NOT NULL PRIMARY KEY,
    secret_sha256 TEXT   NOT NULL,
    node          TEXT   NOT NULL,
    updated_at    BIGINT NOT NULL
);
CREATE TABLE page_reports (
    id          TEXT   NOT NULL PRIMARY KEY,
    started_at  BIGINT NOT NULL,
    call_id     TEXT   NOT NULL,
    report      TEXT   NOT NULL
);
CREATE INDEX page_reports_by_start ON page_reports (started_at);
CREATE INDEX page_reports_by_call ON page_reports (call_id);
