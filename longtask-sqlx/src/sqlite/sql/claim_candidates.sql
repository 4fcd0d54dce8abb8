-- The first ?3 due waiting tasks of job ?1 at time ?2, in claim order, read from the ready index
-- (scheduled tasks not yet due are skipped within it; finished tasks are not in it).
SELECT id, priority, run_at
FROM longtask_tasks INDEXED BY longtask_tasks_ready
WHERE job = ?1 AND status IN ('queued', 'scheduled', 'retrying') AND run_at <= ?2
ORDER BY priority DESC, run_at, id
LIMIT ?3
