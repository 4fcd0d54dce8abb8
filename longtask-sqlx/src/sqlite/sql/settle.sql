-- Ends attempts (or cancels waiting tasks). ?1: JSON array of {id (hex), status, and, when they
-- change, run_at, error, error_at, progress (JSON text), output, finished_at, purge_at, outcome}.
-- Absent fields keep their value; the lease is cleared. With an outcome ("failed", "lost",
-- "cancelled": an attempt ended without success), the running attempt is appended to the attempt
-- history, ended at error_at, keeping the last 20 (MAX_ATTEMPT_HISTORY); the SET expressions read
-- the row as it was, so its lease owner is still there. (The CTE turns each element into JSON
-- text once, instead of once per field read.)
WITH u (v) AS MATERIALIZED (SELECT value FROM json_each(?1))
UPDATE longtask_tasks
SET status = u.v ->> 'status',
    run_at = coalesce(u.v ->> 'run_at', run_at),
    lease_owner = NULL,
    lease_expires_at = NULL,
    error_message = coalesce(u.v ->> 'error', error_message),
    error_attempt = iif(u.v ->> 'error' IS NULL, error_attempt, attempt),
    error_at = coalesce(u.v ->> 'error_at', error_at),
    progress = coalesce(u.v ->> 'progress', progress),
    output = coalesce(u.v ->> 'output', output),
    finished_at = coalesce(u.v ->> 'finished_at', finished_at),
    purge_at = coalesce(u.v ->> 'purge_at', purge_at),
    attempts = CASE WHEN u.v ->> 'outcome' IS NULL THEN attempts ELSE (
        SELECT iif(json_array_length(a) > 20, json_remove(a, '$[0]'), a)
        FROM (SELECT json_insert(coalesce(longtask_tasks.attempts, '[]'), '$[#]', json_object(
            'attempt', longtask_tasks.attempt,
            'started_at', longtask_tasks.started_at,
            'ended_at', u.v ->> 'error_at',
            'worker', longtask_tasks.lease_owner,
            'outcome', u.v ->> 'outcome',
            'error', u.v ->> 'error')) AS a)
    ) END,
    version = version + 1
FROM u
WHERE longtask_tasks.id = unhex(u.v ->> 'id')
