-- A task's status, progress, change counter and retention (cancel, watch).
SELECT status, progress, version, retention_ms FROM longtask_tasks WHERE id = ?1
