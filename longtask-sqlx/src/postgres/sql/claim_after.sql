-- Claims like claim.sql, but per job only from the job's cursor on: $1 the jobs, and per job the
-- key (priority $7, run_at $8, id $9) of the last task claimed. Per job, three ordered scans of
-- the waiting-tasks index: the higher priorities (from the head of the job's part of the index),
-- the cursor's priority after the cursor (starting just after it, so the dead index entries that
-- earlier claims left behind it are never walked), and the lower priorities (from their head:
-- all of it sorts after the cursor). So every task sorting after a job's cursor is a candidate,
-- and a claim over several jobs takes them in claim order even when one job's candidates fill
-- the limit. Tasks sorting before a cursor in its own priority are left to claim.sql (see
-- cursor.rs for when it runs). $2 now, $3 the limit, $4 the worker, $5 the lease expiry, $6 the
-- NOTIFY channel.
WITH picked AS (
    SELECT w.id
    FROM unnest($1::text[], $7::integer[], $8::bigint[], $9::uuid[])
         AS j(job, priority, run_at, id)
    CROSS JOIN LATERAL (
        SELECT * FROM (
            SELECT t.id, t.priority, t.run_at
            FROM {schema}.tasks AS t
            WHERE t.job = j.job
              AND t.status IN ('queued', 'scheduled', 'retrying')
              AND t.priority > j.priority
              AND t.run_at <= $2
            ORDER BY t.priority DESC, t.run_at, t.id
            LIMIT $3
            FOR UPDATE SKIP LOCKED
        ) AS higher
        UNION ALL
        SELECT * FROM (
            SELECT t.id, t.priority, t.run_at
            FROM {schema}.tasks AS t
            WHERE t.job = j.job
              AND t.status IN ('queued', 'scheduled', 'retrying')
              AND t.priority = j.priority
              AND (t.run_at, t.id) > (j.run_at, j.id)
              AND t.run_at <= $2
            ORDER BY t.priority DESC, t.run_at, t.id
            LIMIT $3
            FOR UPDATE SKIP LOCKED
        ) AS after_cursor
        UNION ALL
        SELECT * FROM (
            SELECT t.id, t.priority, t.run_at
            FROM {schema}.tasks AS t
            WHERE t.job = j.job
              AND t.status IN ('queued', 'scheduled', 'retrying')
              AND t.priority < j.priority
              AND t.run_at <= $2
            ORDER BY t.priority DESC, t.run_at, t.id
            LIMIT $3
            FOR UPDATE SKIP LOCKED
        ) AS lower
    ) AS w
    ORDER BY w.priority DESC, w.run_at, w.id
    LIMIT $3
),
{claim_lease}
