-- The first waiting task (in claim order) of job ?1 below priority ?2: its priority and run_at,
-- the earliest of that priority.
SELECT priority, run_at FROM longtask_tasks INDEXED BY longtask_tasks_ready
WHERE status IN ('queued', 'scheduled', 'retrying') AND job = ?1 AND priority < ?2
ORDER BY priority DESC, run_at
LIMIT 1
