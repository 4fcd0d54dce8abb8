id, job, params, status, priority, run_at, attempt, max_attempts, lease_owner, lease_expires_at,
cancel_requested, last_error, last_error_attempt, last_error_at, progress::text AS progress,
output, created_at, started_at, finished_at, retention_ms, owner, idempotency_key, checkpoint_info, concurrency_key,
group_id, open_members, attempts::text AS attempts
