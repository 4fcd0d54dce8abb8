-- Saves a running task's checkpoint under its live lease ($1 id, $2 lease token; a stale lease
-- changes nothing): the state $3 and its record $4, with the progress $5 (JSON text) when not
-- NULL, which is then sent to the task's watchers on channel $6 as a progress report is.
WITH saved AS (
    UPDATE {schema}.tasks AS t
    SET checkpoint = $3,
        checkpoint_info = $4,
        progress = COALESCE($5::text::json, t.progress)
    WHERE t.id = $1 AND t.token = $2 AND t.status = 'running'
    RETURNING t.id
),
notified AS (
    SELECT pg_notify($6, CASE WHEN octet_length($5::text) < 7000
                              THEN json_build_object('t', s.id, 'p', $5::text::json)::text
                              ELSE json_build_object('t', s.id, 'r', 1)::text
                         END) AS sent
    FROM saved AS s
    WHERE $5::text IS NOT NULL
      AND EXISTS (SELECT 1 FROM {schema}.watches AS w WHERE w.task_id = s.id)
)
SELECT (SELECT count(*) FROM saved) AS saved, (SELECT count(*) FROM notified) AS notified
