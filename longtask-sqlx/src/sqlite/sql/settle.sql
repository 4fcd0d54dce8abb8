-- Ends attempts (or cancels waiting tasks). ?1: JSON array of {id (hex), status, and, when they
-- change, run_at, error, error_at, progress (JSON text), output, finished_at, purge_at}. Absent
-- fields keep their value; the lease is cleared.
UPDATE longtask_tasks
SET status = u.value ->> 'status',
    run_at = coalesce(u.value ->> 'run_at', run_at),
    lease_owner = NULL,
    lease_expires_at = NULL,
    error_message = coalesce(u.value ->> 'error', error_message),
    error_attempt = iif(u.value ->> 'error' IS NULL, error_attempt, attempt),
    error_at = coalesce(u.value ->> 'error_at', error_at),
    progress = coalesce(u.value ->> 'progress', progress),
    output = coalesce(u.value ->> 'output', output),
    finished_at = coalesce(u.value ->> 'finished_at', finished_at),
    purge_at = coalesce(u.value ->> 'purge_at', purge_at),
    version = version + 1
FROM json_each(?1) AS u
WHERE longtask_tasks.id = unhex(u.value ->> 'id')
