-- The earliest run_at of each job's waiting tasks. Per (job, priority) group, the first entry of
-- the claim index is the group's earliest: a recursive walk seeks from group to group, one index
-- probe each, instead of reading every waiting task.
WITH RECURSIVE groups AS (
    (SELECT job, priority, run_at FROM {schema}.tasks
     WHERE status IN ('queued', 'scheduled', 'retrying')
     ORDER BY job, priority DESC, run_at
     LIMIT 1)
    UNION ALL
    SELECT n.job, n.priority, n.run_at
    FROM groups AS g
    CROSS JOIN LATERAL (
        (SELECT t.job, t.priority, t.run_at FROM {schema}.tasks AS t
         WHERE t.status IN ('queued', 'scheduled', 'retrying')
           AND t.job = g.job AND t.priority < g.priority
         ORDER BY t.job, t.priority DESC, t.run_at
         LIMIT 1)
        UNION ALL
        (SELECT t.job, t.priority, t.run_at FROM {schema}.tasks AS t
         WHERE t.status IN ('queued', 'scheduled', 'retrying') AND t.job > g.job
         ORDER BY t.job, t.priority DESC, t.run_at
         LIMIT 1)
        LIMIT 1
    ) AS n
)
SELECT job, min(run_at) FROM groups GROUP BY job
