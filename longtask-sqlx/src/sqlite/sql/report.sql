-- Stores the latest progress of unfinished tasks. ?1: JSON array of {id (hex), progress (JSON text)}.
WITH u (v) AS MATERIALIZED (SELECT value FROM json_each(?1))
UPDATE longtask_tasks
SET progress = u.v ->> 'progress',
    version = version + 1
FROM u
WHERE longtask_tasks.id = unhex(u.v ->> 'id')
  AND longtask_tasks.status IN ('queued', 'scheduled', 'running', 'retrying')
RETURNING longtask_tasks.id, longtask_tasks.version
