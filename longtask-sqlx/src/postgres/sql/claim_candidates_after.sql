-- The next $6 due waiting tasks of job $1 at $2 after the position ($3 priority, $4 run_at,
-- $5 id) in claim order, with their concurrency keys, locked (FOR UPDATE SKIP LOCKED): a claim
-- under concurrency limits walks the waiting-tasks index page by page past the tasks it skips.
-- Two ordered scans of the index, each a range of it: the rest of the position's priority, and
-- the lower priorities from their head (a single condition with OR would not be one range, and
-- a generic plan would read and sort every waiting task of the job).
SELECT id, priority, run_at, concurrency_key FROM (
    SELECT * FROM (
        SELECT t.id, t.priority, t.run_at, t.concurrency_key
        FROM {schema}.tasks AS t
        WHERE t.job = $1
          AND t.status IN ('queued', 'scheduled', 'retrying')
          AND t.priority = $3
          AND (t.run_at, t.id) > ($4, $5)
          AND t.run_at <= $2
        ORDER BY t.priority DESC, t.run_at, t.id
        LIMIT $6
        FOR UPDATE SKIP LOCKED
    ) AS same_priority
    UNION ALL
    SELECT * FROM (
        SELECT t.id, t.priority, t.run_at, t.concurrency_key
        FROM {schema}.tasks AS t
        WHERE t.job = $1
          AND t.status IN ('queued', 'scheduled', 'retrying')
          AND t.priority < $3
          AND t.run_at <= $2
        ORDER BY t.priority DESC, t.run_at, t.id
        LIMIT $6
        FOR UPDATE SKIP LOCKED
    ) AS lower
) AS candidates
ORDER BY priority DESC, run_at, id
LIMIT $6
