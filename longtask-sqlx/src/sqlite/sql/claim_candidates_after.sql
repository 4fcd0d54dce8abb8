-- The next ?6 due waiting tasks of job ?1 at time ?2 after the position (?3 priority, ?4 run_at,
-- ?5 id) in claim order, with their concurrency keys: a claim under concurrency limits walks
-- the ready index page by page past the tasks it must skip.
SELECT id, priority, run_at, concurrency_key
FROM longtask_tasks INDEXED BY longtask_tasks_ready
WHERE job = ?1 AND status IN ('queued', 'scheduled', 'retrying') AND run_at <= ?2
  AND (priority < ?3 OR (priority = ?3 AND (run_at, id) > (?4, ?5)))
ORDER BY priority DESC, run_at, id
LIMIT ?6
