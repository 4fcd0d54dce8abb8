-- Extends to ?2 the live leases among ?1 (JSON array of {id (hex), token}).
WITH u (v) AS MATERIALIZED (SELECT value FROM json_each(?1))
UPDATE longtask_tasks
SET lease_expires_at = ?2
FROM u
WHERE longtask_tasks.id = unhex(u.v ->> 'id')
  AND longtask_tasks.token = u.v ->> 'token'
  AND longtask_tasks.status = 'running'
RETURNING longtask_tasks.id, longtask_tasks.token, longtask_tasks.cancel_requested
