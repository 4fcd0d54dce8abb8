-- The running tasks among ?1 (JSON array of hex ids), with what ending an attempt needs.
SELECT id, job, token, attempt, max_attempts, cancel_requested, retention_ms, version, group_id
FROM longtask_tasks
WHERE id IN (SELECT unhex(value) FROM json_each(?1)) AND status = 'running'
