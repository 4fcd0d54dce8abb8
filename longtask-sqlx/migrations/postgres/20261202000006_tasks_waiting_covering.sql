-- Stats count waiting tasks per job and status through the claim index: carrying each task's
-- status in it (INCLUDE, not a key column, so the claim order is unchanged) lets the count read
-- the index alone once autovacuum has marked the pages all-visible. The index is rebuilt under
-- its old name; claims use it the same way.
CREATE INDEX tasks_waiting_covering ON tasks (job, priority DESC, run_at, id) INCLUDE (status)
    WHERE status IN ('queued', 'scheduled', 'retrying');
DROP INDEX tasks_waiting;
ALTER INDEX tasks_waiting_covering RENAME TO tasks_waiting;
