-- The next $6 due waiting tasks of job $1 at $2 after the position ($3 priority, $4 run_at,
-- $5 id) in claim order, with their concurrency keys, locked (FOR UPDATE SKIP LOCKED): a claim
-- under concurrency limits walks the waiting-tasks index page by page past the tasks it skips.
SELECT t.id, t.priority, t.run_at, t.concurrency_key
FROM {schema}.tasks AS t
WHERE t.job = $1
  AND t.status IN ('queued', 'scheduled', 'retrying')
  AND t.run_at <= $2
  AND (t.priority < $3 OR (t.priority = $3 AND (t.run_at, t.id) > ($4, $5)))
ORDER BY t.priority DESC, t.run_at, t.id
LIMIT $6
FOR UPDATE SKIP LOCKED
