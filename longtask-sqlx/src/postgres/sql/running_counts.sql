-- The running tasks of job $1 by concurrency key (NULL: tasks without one), found through the
-- index of leased (running) tasks: what a claim under concurrency limits starts from.
SELECT concurrency_key, count(*)
FROM {schema}.tasks
WHERE lease_expires_at IS NOT NULL AND status = 'running' AND job = $1
GROUP BY concurrency_key
