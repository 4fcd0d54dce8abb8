-- The running tasks of job ?1 by concurrency key (NULL: tasks without one), read through the
-- index of running tasks: what a claim under concurrency limits starts from.
SELECT concurrency_key, count(*)
FROM longtask_tasks INDEXED BY longtask_tasks_lease
WHERE status = 'running' AND lease_expires_at IS NOT NULL AND job = ?1
GROUP BY concurrency_key
