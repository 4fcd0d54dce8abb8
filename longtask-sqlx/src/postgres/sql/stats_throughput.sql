-- Tasks finished per job, minute and status since minute $1.
SELECT job, minute, status, sum(n)::bigint
FROM {schema}.throughput
WHERE minute >= $1 AND minute > 0
GROUP BY job, minute, status
