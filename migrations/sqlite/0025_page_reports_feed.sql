-- Page reports on the change feed (see the PostgreSQL migration). On SQLite there is one node
-- and no feed: the node that stores a report wakes its own waiters. Nothing to change here.
SELECT 1;
