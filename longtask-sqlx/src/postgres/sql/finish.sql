-- Records attempts' outcomes, fenced by lease. Per completion: $1 id, $2 token, $3 kind
-- ('succeeded', 'failed' or 'cancelled'), $4 output, $5 error message, $6 retry time (NULL: do not
-- retry), $7 progress JSON (NULL: none). $8 now, $9 the latest representable time, $10 the
-- NOTIFY channel. A failure is retried only if attempts remain and no cancel was requested;
-- otherwise it fails, or is cancelled when cancel was requested. A failed or cancelled attempt
-- is appended to the attempt history. Returns the leases applied.
WITH input AS (
    SELECT *
    FROM unnest($1::uuid[], $2::bigint[], $3::text[], $4::text[], $5::text[], $6::bigint[],
                $7::text[])
         AS c(id, token, kind, output, error, retry_at, progress)
),
finished AS (
    UPDATE {schema}.tasks AS t
    SET status = CASE
            WHEN c.kind = 'succeeded' THEN 'succeeded'
            WHEN c.kind = 'failed' AND c.retry_at IS NOT NULL AND t.attempt < t.max_attempts
                 AND NOT t.cancel_requested THEN 'retrying'
            WHEN c.kind = 'failed' AND NOT t.cancel_requested THEN 'failed'
            ELSE 'cancelled'
        END,
        output = CASE WHEN c.kind = 'succeeded' THEN c.output ELSE t.output END,
        progress = COALESCE(c.progress::json, t.progress),
        last_error = CASE WHEN c.kind = 'succeeded' THEN t.last_error ELSE c.error END,
        last_error_attempt = CASE WHEN c.kind = 'succeeded' THEN t.last_error_attempt ELSE t.attempt END,
        last_error_at = CASE WHEN c.kind = 'succeeded' THEN t.last_error_at ELSE $8 END,
        run_at = CASE
            WHEN c.kind = 'failed' AND c.retry_at IS NOT NULL AND t.attempt < t.max_attempts
                 AND NOT t.cancel_requested THEN c.retry_at
            ELSE t.run_at
        END,
        -- An attempt that ended without success joins the history (the last 20,
        -- MAX_ATTEMPT_HISTORY); SET reads the row as it was, lease owner included.
        attempts = CASE WHEN c.kind = 'succeeded' THEN t.attempts ELSE (
            SELECT CASE WHEN jsonb_array_length(a) > 20 THEN a - 0 ELSE a END
            FROM (SELECT COALESCE(t.attempts, '[]'::jsonb) || jsonb_build_array(jsonb_build_object(
                'attempt', t.attempt, 'started_at', t.started_at, 'ended_at', $8::bigint,
                'worker', t.lease_owner, 'outcome', c.kind, 'error', c.error)) AS a) AS appended
        ) END,
        lease_owner = NULL,
        lease_expires_at = NULL,
        finished_at = CASE
            WHEN c.kind = 'failed' AND c.retry_at IS NOT NULL AND t.attempt < t.max_attempts
                 AND NOT t.cancel_requested THEN NULL
            ELSE $8
        END,
        expires_at = CASE
            WHEN c.kind = 'failed' AND c.retry_at IS NOT NULL AND t.attempt < t.max_attempts
                 AND NOT t.cancel_requested THEN NULL
            ELSE $8 + LEAST(t.retention_ms, $9 - $8)
        END
    FROM input AS c
    WHERE t.id = c.id AND t.token = c.token AND t.status = 'running'
    RETURNING t.id, t.token, t.status, c.progress, t.group_id, t.job
),
{leave_groups},
events AS (
    SELECT f.id, 1 AS ord,
           CASE WHEN octet_length(f.progress) < 7000
                THEN json_build_object('t', f.id, 'p', f.progress::json)::text
                ELSE json_build_object('t', f.id, 'r', 1)::text
           END AS payload
    FROM finished AS f
    WHERE f.progress IS NOT NULL
    UNION ALL
    SELECT f.id, 2 AS ord, json_build_object('t', f.id, 's', f.status)::text AS payload
    FROM finished AS f
),
notified AS (
    SELECT pg_notify($10, e.payload) AS sent
    FROM (
        SELECT e.payload
        FROM events AS e
        WHERE EXISTS (SELECT 1 FROM {schema}.watches AS w WHERE w.task_id = e.id)
        ORDER BY e.id, e.ord
    ) AS e
    UNION ALL
    SELECT pg_notify($10, 'w') AS sent
    FROM (SELECT 1 FROM finished WHERE status = 'retrying' LIMIT 1) AS retried
)
SELECT f.id, f.token,
       (SELECT count(*) FROM notified) + (SELECT count(*) FROM group_notified) AS notified
FROM finished AS f
