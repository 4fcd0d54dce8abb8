-- The end of the statements that bring tasks to a final status (finish.sql, recover.sql,
-- cancel_waiting.sql), put in place of their `{leave_groups}` with {ended} naming their CTE of
-- changed tasks (id, status, group_id) and {now}, {max} and {channel} their parameters. Each
-- member that reached a final status is discounted in its group's root, in the same statement;
-- a root whose last member this was is fired: a plain root (job longtask.group) succeeds, a
-- completion job's root becomes due. Roots are locked in id order first, so that concurrent
-- statements never wait on each other in a cycle; a statement waiting for a root's lock counts
-- from the value the other committed. Then the tasks that reached a final status (and the plain
-- roots that succeeded) are counted per job and status in the minute of {now}, on the
-- connection's shard of the counters (see the stats migrations); rows are written in (job,
-- status) order, so that concurrent statements on one shard never wait on each other in a cycle.
left_groups AS (
    SELECT x.group_id AS root, count(*) AS n
    FROM {ended} AS x
    WHERE x.group_id IS NOT NULL AND x.status IN ('succeeded', 'failed', 'cancelled')
    GROUP BY x.group_id
),
locked_roots AS (
    SELECT r.id AS locked
    FROM {schema}.tasks AS r
    WHERE r.id IN (SELECT root FROM left_groups) AND r.open_members IS NOT NULL
    ORDER BY r.id
    FOR UPDATE
),
counted AS (
    UPDATE {schema}.tasks AS r
    SET open_members = r.open_members - l.n,
        status = CASE
            WHEN r.open_members - l.n > 0 OR r.status <> 'scheduled' THEN r.status
            WHEN r.job = 'longtask.group' THEN 'succeeded'
            ELSE 'queued'
        END,
        run_at = CASE
            WHEN r.open_members - l.n <= 0 AND r.status = 'scheduled'
                 AND r.job <> 'longtask.group' THEN {now}
            ELSE r.run_at
        END,
        output = CASE
            WHEN r.open_members - l.n <= 0 AND r.status = 'scheduled'
                 AND r.job = 'longtask.group' THEN 'null'
            ELSE r.output
        END,
        finished_at = CASE
            WHEN r.open_members - l.n <= 0 AND r.status = 'scheduled'
                 AND r.job = 'longtask.group' THEN {now}
            ELSE r.finished_at
        END,
        expires_at = CASE
            WHEN r.open_members - l.n <= 0 AND r.status = 'scheduled'
                 AND r.job = 'longtask.group' THEN {now} + LEAST(r.retention_ms, {max} - {now})
            ELSE r.expires_at
        END
    FROM (
        SELECT g.root, g.n FROM left_groups AS g JOIN locked_roots AS k ON k.locked = g.root
    ) AS l
    WHERE r.id = l.root
    RETURNING r.id, r.status, r.open_members, r.job
),
fired AS (
    SELECT c.id, c.status, c.job FROM counted AS c
    WHERE c.open_members <= 0 AND c.status IN ('queued', 'succeeded')
),
group_notified AS (
    SELECT pg_notify({channel}, json_build_object('t', f.id, 's', f.status)::text) AS sent
    FROM fired AS f
    WHERE EXISTS (SELECT 1 FROM {schema}.watches AS w WHERE w.task_id = f.id)
    UNION ALL
    SELECT pg_notify({channel}, 'w') AS sent
    FROM (SELECT 1 FROM fired WHERE status = 'queued' LIMIT 1) AS due
),
ended_counts AS (
    SELECT x.job, x.status, count(*) AS n
    FROM (
        SELECT e.job, e.status FROM {ended} AS e
        WHERE e.status IN ('succeeded', 'failed', 'cancelled')
        UNION ALL
        SELECT f.job, f.status FROM fired AS f WHERE f.status = 'succeeded'
    ) AS x
    GROUP BY x.job, x.status
),
throughput_counted AS (
    INSERT INTO {schema}.throughput AS f (minute, job, status, shard, n)
    SELECT {now} / 60000 * 60000, c.job, c.status, pg_backend_pid() % 8, c.n
    FROM ended_counts AS c
    ORDER BY c.job, c.status
    ON CONFLICT (minute, job, status, shard) DO UPDATE SET n = f.n + excluded.n
)
