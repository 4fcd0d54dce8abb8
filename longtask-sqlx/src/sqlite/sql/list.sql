-- Tasks in id (submission) order after ?4 (an empty blob for the start), filtered by job (?1),
-- statuses (?2, a JSON array) and owner (?3), each filter skipped when NULL; at most ?5. (With a
-- group, list_group.sql.)
SELECT id, job, params, status, priority, run_at, attempt, max_attempts, lease_owner,
       lease_expires_at, cancel_requested, error_message, error_attempt, error_at, progress,
       output, created_at, started_at, finished_at, retention_ms, owner, idempotency_key,
       checkpoint_info, concurrency_key, group_id, open_members, attempts
FROM longtask_tasks
WHERE id > ?4
  AND (?1 IS NULL OR job = ?1)
  AND (?2 IS NULL OR status IN (SELECT value FROM json_each(?2)))
  AND (?3 IS NULL OR owner = ?3)
ORDER BY id
LIMIT ?5
