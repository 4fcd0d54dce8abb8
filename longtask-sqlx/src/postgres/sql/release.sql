-- Gives leased tasks back unrun ($1 ids, $2 tokens): queued, due at $3 (now), the attempt not
-- counted. $4 is the NOTIFY channel. Returns the leases applied.
WITH released AS (
    UPDATE {schema}.tasks AS t
    SET status = 'queued',
        attempt = GREATEST(t.attempt - 1, 0),
        run_at = $3,
        lease_owner = NULL,
        lease_expires_at = NULL
    FROM unnest($1::uuid[], $2::bigint[]) AS l(id, token)
    WHERE t.id = l.id AND t.token = l.token AND t.status = 'running'
    RETURNING t.id, t.token
),
notified AS (
    SELECT pg_notify($4, json_build_object('t', r.id, 's', 'queued')::text) AS sent
    FROM released AS r
    WHERE EXISTS (SELECT 1 FROM {schema}.watches AS w WHERE w.task_id = r.id)
    UNION ALL
    SELECT pg_notify($4, 'w') AS sent
    FROM (SELECT 1 FROM released LIMIT 1) AS any_released
)
SELECT r.id, r.token, (SELECT count(*) FROM notified) AS notified
FROM released AS r
