-- Asks a running task to stop; its worker learns it at the next heartbeat.
UPDATE longtask_tasks SET cancel_requested = 1, version = version + 1
WHERE id = ?1 AND status = 'running'
