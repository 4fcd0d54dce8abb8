-- The end of both claim statements (claim.sql, claim_after.sql), put in place of their
-- `{claim_lease}`: leases the tasks in `picked` to $4 until $5 (attempt counted, fencing token
-- bumped, started at $2), tells the claimed tasks' watchers on channel $6 that they are running,
-- and returns the claimed tasks.
claimed AS (
    UPDATE {schema}.tasks AS t
    SET status = 'running',
        attempt = t.attempt + 1,
        token = t.token + 1,
        lease_owner = $4,
        lease_expires_at = $5,
        started_at = $2
    FROM picked
    WHERE t.id = picked.id
    RETURNING t.id, t.job, t.params, t.attempt, t.max_attempts, t.token, t.priority, t.run_at
),
notified AS (
    SELECT pg_notify($6, json_build_object('t', c.id, 's', 'running')::text) AS sent
    FROM claimed AS c
    WHERE EXISTS (SELECT 1 FROM {schema}.watches AS w WHERE w.task_id = c.id)
)
SELECT c.id, c.job, c.params, c.attempt, c.max_attempts, c.token, c.priority, c.run_at,
       (SELECT count(*) FROM notified) AS notified
FROM claimed AS c
