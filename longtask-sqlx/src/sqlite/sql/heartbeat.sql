-- Extends to ?2 the live leases among ?1 (JSON array of {id (hex), token}).
UPDATE longtask_tasks
SET lease_expires_at = ?2
FROM json_each(?1) AS u
WHERE longtask_tasks.id = unhex(u.value ->> 'id')
  AND longtask_tasks.token = u.value ->> 'token'
  AND longtask_tasks.status = 'running'
RETURNING longtask_tasks.id, longtask_tasks.token, longtask_tasks.cancel_requested
