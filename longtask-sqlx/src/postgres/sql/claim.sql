-- Claims up to $3 due tasks of the jobs $1 at $2 (now) for worker $4, leased until $5; $6 is the
-- NOTIFY channel. Per job, an ordered scan of the waiting-tasks index (FOR UPDATE SKIP LOCKED, so
-- concurrent claimers pass each other by); the best $3 over all jobs are then taken. Each
-- claimed task's attempt is counted and its fencing token is bumped. Watchers of a claimed task
-- are told it is running.
WITH picked AS (
    SELECT w.id
    FROM unnest($1::text[]) AS j(job)
    CROSS JOIN LATERAL (
        SELECT t.id, t.priority, t.run_at
        FROM {schema}.tasks AS t
        WHERE t.job = j.job
          AND t.status IN ('queued', 'scheduled', 'retrying')
          AND t.run_at <= $2
        ORDER BY t.priority DESC, t.run_at, t.id
        LIMIT $3
        FOR UPDATE SKIP LOCKED
    ) AS w
    ORDER BY w.priority DESC, w.run_at, w.id
    LIMIT $3
),
{claim_lease}
