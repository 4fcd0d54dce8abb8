-- Stores the latest progress of running tasks under their live lease ($1 ids, $2 lease tokens,
-- $3 progress JSON; a stale lease changes nothing) and sends it to their watchers on channel $4
-- (a small payload, or a note to read it back when it is too large for NOTIFY).
WITH reported AS (
    UPDATE {schema}.tasks AS t
    SET progress = u.progress::json
    FROM unnest($1::uuid[], $2::bigint[], $3::text[]) AS u(id, token, progress)
    WHERE t.id = u.id AND t.token = u.token AND t.status = 'running'
    RETURNING t.id, u.progress
),
notified AS (
    SELECT pg_notify($4, CASE WHEN octet_length(r.progress) < 7000
                              THEN json_build_object('t', r.id, 'p', r.progress::json)::text
                              ELSE json_build_object('t', r.id, 'r', 1)::text
                         END) AS sent
    FROM reported AS r
    WHERE EXISTS (SELECT 1 FROM {schema}.watches AS w WHERE w.task_id = r.id)
)
SELECT (SELECT count(*) FROM reported) AS reported, (SELECT count(*) FROM notified) AS notified
