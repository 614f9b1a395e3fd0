-- Page reports on the change feed (issue 16): a report stored by the node that ran the page is
-- announced on the channel ucm_changes in the writing transaction, so requests waiting for it
-- on any node (`GET /ucm/paging/pages?call_id=ID&wait_ms=MS`) are answered at once rather
-- than at their node's next look in the database. Payload:
--   page-report <unix ms> <call_id>
CREATE FUNCTION ucm_notify_page_report() RETURNS trigger AS $$
BEGIN
    PERFORM pg_notify('ucm_changes', 'page-report '
        || (extract(epoch FROM clock_timestamp()) * 1000)::bigint || ' '
        || NEW.call_id);
    RETURN NEW;
END
$$ LANGUAGE plpgsql;

CREATE TRIGGER page_reports_notify AFTER INSERT ON page_reports
    FOR EACH ROW EXECUTE FUNCTION ucm_notify_page_report();
