-- Stores the latest progress of running tasks under their live lease (a stale lease changes
-- nothing). ?1: JSON array of {id (hex), token, progress (JSON text)}.
WITH u (v) AS MATERIALIZED (SELECT value FROM json_each(?1))
UPDATE longtask_tasks
SET progress = u.v ->> 'progress',
    version = version + 1
FROM u
WHERE longtask_tasks.id = unhex(u.v ->> 'id')
  AND longtask_tasks.status = 'running'
  AND longtask_tasks.token = u.v ->> 'token'
RETURNING longtask_tasks.id, longtask_tasks.version
