-- Running tasks per job (through the lease index) and finished ones (the counters, summed over
-- their minutes and shards): (job, status, count).
SELECT job, 'running' AS status, count(*) AS n
FROM {schema}.tasks
WHERE lease_expires_at IS NOT NULL AND status = 'running'
GROUP BY job
UNION ALL
SELECT job, status, sum(n)::bigint AS n
FROM {schema}.throughput
GROUP BY job, status
HAVING sum(n) > 0
