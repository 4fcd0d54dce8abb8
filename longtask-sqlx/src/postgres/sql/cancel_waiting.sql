-- Cancels a waiting task: $1 id, $2 now, $3 the latest representable time, $4 the NOTIFY channel.
WITH cancelled AS (
    UPDATE {schema}.tasks AS t
    SET status = 'cancelled',
        finished_at = $2,
        expires_at = $2 + LEAST(t.retention_ms, $3 - $2),
        lease_owner = NULL,
        lease_expires_at = NULL
    WHERE t.id = $1
    RETURNING t.id, t.status, t.group_id, t.job
),
{leave_groups},
notified AS (
    SELECT pg_notify($4, json_build_object('t', c.id, 's', 'cancelled')::text) AS sent
    FROM cancelled AS c
    WHERE EXISTS (SELECT 1 FROM {schema}.watches AS w WHERE w.task_id = c.id)
)
SELECT (SELECT count(*) FROM cancelled) AS cancelled,
       (SELECT count(*) FROM notified) + (SELECT count(*) FROM group_notified) AS notified
