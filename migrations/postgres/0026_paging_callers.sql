-- The callers of running pages (issue 16): the active Paging Server writes a row for a page's
-- caller whose call it carries itself (the caller registered with this node), once the page
-- goes ahead, and deletes it when the page ends. A Paging Server killed mid-page leaves the
-- row behind: the node that takes the lease next ends the caller's call (a BYE in the
-- caller's dialog, with a Reason saying the node is down) and deletes it. `dialog` is the
-- caller's dialog sealed with the cluster's secret (a dialog handle, src/sip/b2bua/handoff.rs).
CREATE TABLE paging_callers (
    instance   TEXT   NOT NULL,
    node       TEXT   NOT NULL,
    call_id    TEXT   NOT NULL,
    dialog     TEXT   NOT NULL,
    started_at BIGINT NOT NULL,
    PRIMARY KEY (instance, call_id)
);
