-- A task's status, progress, change counter, retention, group and job (cancel, watch).
SELECT status, progress, version, retention_ms, group_id, job FROM longtask_tasks WHERE id = ?1
