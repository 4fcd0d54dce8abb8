-- Inserts a batch of tasks in one statement. Per task: $1 id, $2 job, $3 params, $4 status,
-- $5 priority, $6 run_at, $7 max_attempts, $8 retention_ms, $9 owner, $10 idempotency_key;
-- $13 concurrency_key, $14 group_id (a member's root), $15 open_members (0 for a root); $11 now,
-- $12 the NOTIFY channel. Tasks without an idempotency key take the plain (fast) path;
-- of those with one, only the first of a batch with a given (job, key) is inserted, and none
-- whose key is already taken. Returns the ids inserted. Wakes workers (once) when a due task
-- was inserted: the notification is delivered when the transaction commits.
WITH input AS (
    SELECT *
    FROM unnest($1::uuid[], $2::text[], $3::text[], $4::text[], $5::integer[], $6::bigint[],
                $7::bigint[], $8::bigint[], $9::text[], $10::text[], $13::text[], $14::uuid[],
                $15::bigint[])
         WITH ORDINALITY
         AS i(id, job, params, status, priority, run_at, max_attempts, retention_ms, owner,
              idempotency_key, concurrency_key, group_id, open_members, ord)
),
plain AS (
    INSERT INTO {schema}.tasks
        (id, job, params, status, priority, run_at, max_attempts, retention_ms, owner,
         concurrency_key, group_id, open_members, created_at)
    SELECT id, job, params, status, priority, run_at, max_attempts, retention_ms, owner,
           concurrency_key, group_id, open_members, $11
    FROM input
    WHERE idempotency_key IS NULL
    RETURNING id, status
),
keyed AS (
    INSERT INTO {schema}.tasks
        (id, job, params, status, priority, run_at, max_attempts, retention_ms, owner,
         idempotency_key, concurrency_key, group_id, open_members, created_at)
    SELECT id, job, params, status, priority, run_at, max_attempts, retention_ms, owner,
           idempotency_key, concurrency_key, group_id, open_members, $11
    FROM (
        SELECT input.*,
               row_number() OVER (PARTITION BY job, idempotency_key ORDER BY ord) AS rank
        FROM input
        WHERE idempotency_key IS NOT NULL
    ) AS first_of_key
    WHERE rank = 1
    ON CONFLICT (job, idempotency_key) WHERE idempotency_key IS NOT NULL DO NOTHING
    RETURNING id, status
),
inserted AS (
    SELECT id, status FROM plain
    UNION ALL
    SELECT id, status FROM keyed
),
wake AS (
    SELECT pg_notify($12, 'w') AS sent
    FROM (SELECT 1 FROM inserted WHERE status = 'queued' LIMIT 1) AS due
)
SELECT inserted.id, inserted.status = 'queued' AS due, (SELECT count(*) FROM wake) AS woken
FROM inserted
