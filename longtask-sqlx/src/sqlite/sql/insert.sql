-- Inserts a batch of new tasks. ?1: JSON array of {id (hex), job, params, status, priority,
-- run_at, max_attempts, retention_ms, owner, key}; ?2: now.
INSERT INTO longtask_tasks (
    id, job, params, status, priority, run_at, attempt, max_attempts, token, version,
    cancel_requested, created_at, retention_ms, owner, idempotency_key
)
SELECT
    unhex(value ->> 'id'), value ->> 'job', value ->> 'params', value ->> 'status',
    value ->> 'priority', value ->> 'run_at', 0, value ->> 'max_attempts', 0, 1,
    0, ?2, value ->> 'retention_ms', value ->> 'owner', value ->> 'key'
FROM json_each(?1)
