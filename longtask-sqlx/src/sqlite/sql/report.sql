-- Stores the latest progress of unfinished tasks. ?1: JSON array of {id (hex), progress (JSON text)}.
UPDATE longtask_tasks
SET progress = u.value ->> 'progress',
    version = version + 1
FROM json_each(?1) AS u
WHERE longtask_tasks.id = unhex(u.value ->> 'id')
  AND longtask_tasks.status IN ('queued', 'scheduled', 'running', 'retrying')
RETURNING longtask_tasks.id, longtask_tasks.version
