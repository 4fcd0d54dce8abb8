-- Ends attempts (or cancels waiting tasks). ?1: JSON array of {id (hex), status, and, when they
-- change, run_at, error, error_at, progress (JSON text), output, finished_at, purge_at}. Absent
-- fields keep their value; the lease is cleared. (The CTE turns each element into JSON text once,
-- instead of once per field read.)
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
    version = version + 1
FROM u
WHERE longtask_tasks.id = unhex(u.v ->> 'id')
