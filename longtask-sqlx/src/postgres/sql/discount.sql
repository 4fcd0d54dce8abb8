-- The end of the statements that remove finished tasks from the counts (purge.sql, delete.sql,
-- retry.sql), put in place of their `{discount}` with {gone} naming their CTE of tasks gone
-- (job, status as it was): each is discounted in minute 0 (see the stats migrations) on the
-- connection's shard of the counters.
discounted AS (
    INSERT INTO {schema}.throughput AS f (minute, job, status, shard, n)
    SELECT 0, g.job, g.status, pg_backend_pid() % 8, -count(*)
    FROM {gone} AS g
    GROUP BY g.job, g.status
    ORDER BY g.job, g.status
    ON CONFLICT (minute, job, status, shard) DO UPDATE SET n = f.n + excluded.n
)
