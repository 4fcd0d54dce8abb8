-- Up to ?2 running tasks whose lease ended at or before ?1, oldest first.
SELECT id, job, token, attempt, max_attempts, cancel_requested, retention_ms, version, group_id
FROM longtask_tasks INDEXED BY longtask_tasks_lease
WHERE status = 'running' AND lease_expires_at <= ?1
ORDER BY lease_expires_at
LIMIT ?2
