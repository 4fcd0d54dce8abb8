-- Folds the minutes of throughput older than two hours before $1 (now) into minute 0, which
-- keeps them in the counts of finished tasks (one row per job, status and shard instead of one
-- per minute). The rows deleted and the rows upserted differ (minute > 0, minute 0), so one
-- statement does both.
WITH old AS (
    DELETE FROM {schema}.throughput
    WHERE minute > 0 AND minute < $1 / 60000 * 60000 - 7200000
    RETURNING job, status, shard, n
)
INSERT INTO {schema}.throughput AS f (minute, job, status, shard, n)
SELECT 0, o.job, o.status, o.shard, sum(o.n)
FROM old AS o
GROUP BY o.job, o.status, o.shard
ORDER BY o.job, o.status, o.shard
ON CONFLICT (minute, job, status, shard) DO UPDATE SET n = f.n + excluded.n
