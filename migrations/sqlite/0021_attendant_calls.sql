-- Attendant Console: the calls the console server holds for the attendants. A call to a Queue
-- DDI is redirected to a CT gateway device and gets a row (`queued`) for as long as it waits;
-- the attendant who answers it takes the row from `queued` to `answered` in one conditional
-- UPDATE, so of attendants answering the same call at once exactly one gets it (the database
-- decides). `instance` is the serving node's instance (call ids are per instance): rows of an
-- instance that no longer serves are closed by the one that takes over.
-- `state`: queued, answered, abandoned (the caller hung up while waiting), lost (the server
-- stopped serving it). Times are unix milliseconds.
CREATE TABLE attendant_calls (
    instance    TEXT   NOT NULL,
    call        BIGINT NOT NULL,
    queue       TEXT   NOT NULL,
    calling     TEXT   NOT NULL,
    device      TEXT   NOT NULL,
    state       TEXT   NOT NULL DEFAULT 'queued',
    attendant   TEXT,
    queued_at   BIGINT NOT NULL,
    answered_at BIGINT,
    ended_at    BIGINT,
    PRIMARY KEY (instance, call)
);
CREATE INDEX attendant_calls_waiting ON attendant_calls (state, queue, queued_at);
