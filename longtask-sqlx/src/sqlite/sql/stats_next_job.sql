-- The first waiting task (in claim order) of the first job after ?1: its job, priority and
-- run_at, the earliest of that priority.
SELECT job, priority, run_at FROM longtask_tasks INDEXED BY longtask_tasks_ready
WHERE status IN ('queued', 'scheduled', 'retrying') AND job > ?1
ORDER BY job, priority DESC, run_at
LIMIT 1
