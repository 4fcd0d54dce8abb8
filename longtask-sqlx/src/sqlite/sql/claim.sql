-- Starts an attempt of each task in ?1 (JSON array of hex ids): a new lease for worker ?2 until
-- ?3, started at ?4, with the attempt counted and a new fencing token.
UPDATE longtask_tasks
SET status = 'running',
    attempt = attempt + 1,
    token = token + 1,
    version = version + 1,
    lease_owner = ?2,
    lease_expires_at = ?3,
    started_at = ?4
WHERE id IN (SELECT unhex(value) FROM json_each(?1))
  AND status IN ('queued', 'scheduled', 'retrying')
RETURNING id, job, params, attempt, max_attempts, token, version, run_at
