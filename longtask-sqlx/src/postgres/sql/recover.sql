-- Recovers up to $2 running tasks whose lease expired at or before $1 (now): retried at once if
-- attempts remain and no cancel was requested, cancelled if it was, failed otherwise. $3 is the
-- latest representable time, $4 the NOTIFY channel. The lost attempt is appended to the attempt
-- history. Returns how many.
WITH expired AS (
    SELECT id FROM {schema}.tasks
    -- lease_expires_at is set exactly while a task runs (the tasks_leased index).
    WHERE lease_expires_at <= $1 AND status = 'running'
    ORDER BY lease_expires_at
    LIMIT $2
    FOR UPDATE SKIP LOCKED
),
recovered AS (
    UPDATE {schema}.tasks AS t
    SET status = CASE
            WHEN t.attempt < t.max_attempts AND NOT t.cancel_requested THEN 'retrying'
            WHEN t.cancel_requested THEN 'cancelled'
            ELSE 'failed'
        END,
        last_error = 'attempt ' || t.attempt || ' was lost: its worker stopped renewing the lease (crashed, killed or stalled)',
        last_error_attempt = t.attempt,
        last_error_at = $1,
        run_at = CASE
            WHEN t.attempt < t.max_attempts AND NOT t.cancel_requested THEN $1
            ELSE t.run_at
        END,
        -- The lost attempt joins the history (the last 20, MAX_ATTEMPT_HISTORY); SET reads the
        -- row as it was, lease owner included.
        attempts = (
            SELECT CASE WHEN jsonb_array_length(a) > 20 THEN a - 0 ELSE a END
            FROM (SELECT COALESCE(t.attempts, '[]'::jsonb) || jsonb_build_array(jsonb_build_object(
                'attempt', t.attempt, 'started_at', t.started_at, 'ended_at', $1::bigint,
                'worker', t.lease_owner, 'outcome', 'lost',
                'error', 'attempt ' || t.attempt || ' was lost: its worker stopped renewing the lease (crashed, killed or stalled)'
            )) AS a) AS appended
        ),
        lease_owner = NULL,
        lease_expires_at = NULL,
        finished_at = CASE
            WHEN t.attempt < t.max_attempts AND NOT t.cancel_requested THEN NULL
            ELSE $1
        END,
        expires_at = CASE
            WHEN t.attempt < t.max_attempts AND NOT t.cancel_requested THEN NULL
            ELSE $1 + LEAST(t.retention_ms, $3 - $1)
        END
    FROM expired AS e
    WHERE t.id = e.id AND t.status = 'running'
    RETURNING t.id, t.status, t.group_id, t.job
),
{leave_groups},
notified AS (
    SELECT pg_notify($4, json_build_object('t', r.id, 's', r.status)::text) AS sent
    FROM recovered AS r
    WHERE EXISTS (SELECT 1 FROM {schema}.watches AS w WHERE w.task_id = r.id)
    UNION ALL
    SELECT pg_notify($4, 'w') AS sent
    FROM (SELECT 1 FROM recovered WHERE status = 'retrying' LIMIT 1) AS retried
)
SELECT (SELECT count(*) FROM recovered) AS recovered,
       (SELECT count(*) FROM notified) + (SELECT count(*) FROM group_notified) AS notified
