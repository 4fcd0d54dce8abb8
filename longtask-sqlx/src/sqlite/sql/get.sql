-- One task's whole record.
SELECT id, job, params, status, priority, run_at, attempt, max_attempts, lease_owner,
       lease_expires_at, cancel_requested, error_message, error_attempt, error_at, progress,
       output, created_at, started_at, finished_at, retention_ms, owner, idempotency_key,
       checkpoint_info, concurrency_key, group_id, open_members, attempts
FROM longtask_tasks
WHERE id = ?1
