-- Gives back unrun the live leases among ?1 (JSON array of {id (hex), token}): queued, due at ?2,
-- the attempt not counted.
WITH u (v) AS MATERIALIZED (SELECT value FROM json_each(?1))
UPDATE longtask_tasks
SET status = 'queued',
    attempt = max(attempt - 1, 0),
    run_at = ?2,
    lease_owner = NULL,
    lease_expires_at = NULL,
    version = version + 1
FROM u
WHERE longtask_tasks.id = unhex(u.v ->> 'id')
  AND longtask_tasks.token = u.v ->> 'token'
  AND longtask_tasks.status = 'running'
RETURNING longtask_tasks.id, longtask_tasks.token, longtask_tasks.version
