-- An operator's delete of task ?1, if it has finished.
DELETE FROM longtask_tasks
WHERE id = ?1 AND status IN ('succeeded', 'failed', 'cancelled')
