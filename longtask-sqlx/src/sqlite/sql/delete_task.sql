-- An operator's delete of task ?1, if it has finished; returns its job and status.
DELETE FROM longtask_tasks
WHERE id = ?1 AND status IN ('succeeded', 'failed', 'cancelled')
RETURNING job, status
