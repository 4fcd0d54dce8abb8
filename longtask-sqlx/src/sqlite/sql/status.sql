-- A task's status, progress, change counter, retention and group (watch).
SELECT status, progress, version, retention_ms, group_id FROM longtask_tasks WHERE id = ?1
