-- Saves a running task's checkpoint under its live lease (a stale lease changes nothing): the
-- state ?3 and its record ?4, with the progress ?5 when not NULL (which is then a visible change).
UPDATE longtask_tasks
SET checkpoint = ?3,
    checkpoint_info = ?4,
    progress = coalesce(?5, progress),
    version = version + (?5 IS NOT NULL)
WHERE id = ?1
  AND status = 'running'
  AND token = ?2
RETURNING version
