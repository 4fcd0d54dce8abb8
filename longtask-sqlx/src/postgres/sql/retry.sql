-- An operator's retry of the tasks $1 at $2 (now): each failed or cancelled one in no group is
-- queued again, due now, with a fresh attempt budget (its last error kept); watchers and idle
-- workers are told on channel $3; they leave the counts of finished tasks. Returns the ids
-- retried.
WITH retryable AS (
    SELECT t.id, t.job, t.status FROM {schema}.tasks AS t
    WHERE t.id = ANY ($1::uuid[])
      AND t.status IN ('failed', 'cancelled')
      AND t.group_id IS NULL AND t.open_members IS NULL
    FOR UPDATE
),
retried AS (
    UPDATE {schema}.tasks AS t
    SET status = 'queued',
        attempt = 0,
        run_at = $2,
        cancel_requested = false,
        finished_at = NULL,
        expires_at = NULL,
        output = NULL,
        lease_owner = NULL,
        lease_expires_at = NULL
    FROM retryable AS o
    WHERE t.id = o.id
      AND t.status IN ('failed', 'cancelled')
      AND t.group_id IS NULL AND t.open_members IS NULL
    RETURNING t.id, o.job, o.status
),
{discount},
notified AS (
    SELECT pg_notify($3, json_build_object('t', r.id, 's', 'queued')::text) AS sent
    FROM retried AS r
    WHERE EXISTS (SELECT 1 FROM {schema}.watches AS w WHERE w.task_id = r.id)
    UNION ALL
    SELECT pg_notify($3, 'w') AS sent
    FROM (SELECT 1 FROM retried LIMIT 1) AS any_retried
)
SELECT r.id, (SELECT count(*) FROM notified) AS notified
FROM retried AS r
