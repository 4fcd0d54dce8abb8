-- An operator's retry of task ?1: queued again at ?2 with a fresh attempt budget (its last error
-- kept), if it failed or was cancelled and is in no group. Returns the new change counter.
UPDATE longtask_tasks
SET status = 'queued',
    attempt = 0,
    run_at = ?2,
    cancel_requested = 0,
    finished_at = NULL,
    purge_at = NULL,
    output = NULL,
    lease_owner = NULL,
    lease_expires_at = NULL,
    version = version + 1
WHERE id = ?1
  AND status IN ('failed', 'cancelled')
  AND group_id IS NULL AND open_members IS NULL
RETURNING version
