-- Finished tasks are counted in one table instead of two, so that a statement that finishes
-- tasks makes one upsert, not two: `throughput` rows of a minute hold the tasks finished in that
-- minute (kept two hours); rows of minute 0 hold everything else (tasks finished before the
-- kept minutes, folded in by purge, and every discount: purge, delete, an operator's retry). A
-- job's count of finished tasks is the sum over all its rows. Both tables were written by the
-- same statements on the same shard, so minute 0 starts as the old totals less the kept minutes.
INSERT INTO throughput (minute, job, status, shard, n)
SELECT 0, c.job, c.status, c.shard, c.n - COALESCE(
    (SELECT sum(t.n) FROM throughput AS t
     WHERE t.minute > 0 AND t.job = c.job AND t.status = c.status AND t.shard = c.shard), 0)
FROM finished_counts AS c
ON CONFLICT (minute, job, status, shard) DO UPDATE SET n = throughput.n + excluded.n;
DROP TABLE finished_counts;
