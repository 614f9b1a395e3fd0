-- Phones listening to a running page (issue 16): the active Paging Server writes a row for
-- each phone that joined a page, once the page goes ahead, and deletes the page's rows when it
-- ends (every listener got RTPRx:Stop). A Paging Server killed mid-page (kill -9) leaves its
-- rows behind: the node that takes the lease next finds rows of another instance, tells each
-- phone RTPRx:Stop (at the address it joined from) and deletes them, so no phone keeps
-- listening to a stream nobody sends.
CREATE TABLE paging_listeners (
    instance  TEXT   NOT NULL,
    node      TEXT   NOT NULL,
    call_id   TEXT   NOT NULL,
    device    TEXT   NOT NULL,
    ip        TEXT   NOT NULL,
    joined_at BIGINT NOT NULL,
    PRIMARY KEY (instance, call_id, device)
);
