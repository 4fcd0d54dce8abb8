-- Inserts a batch of new tasks. ?1: JSON array of {id (hex), job, params, status, priority,
-- run_at, max_attempts, retention_ms, owner, key, ckey, group (hex), open}; ?2: now. (The CTE turns each element into JSON
-- text once, instead of once per field read.)
WITH u (v) AS MATERIALIZED (SELECT value FROM json_each(?1))
INSERT INTO longtask_tasks (
    id, job, params, status, priority, run_at, attempt, max_attempts, token, version,
    cancel_requested, created_at, retention_ms, owner, idempotency_key, concurrency_key,
    group_id, open_members
)
SELECT
    unhex(v ->> 'id'), v ->> 'job', v ->> 'params', v ->> 'status',
    v ->> 'priority', v ->> 'run_at', 0, v ->> 'max_attempts', 0, 1,
    0, ?2, v ->> 'retention_ms', v ->> 'owner', v ->> 'key', v ->> 'ckey',
    unhex(v ->> 'group'), v ->> 'open'
FROM u
