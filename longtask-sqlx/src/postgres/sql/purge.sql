-- Deletes up to $2 finished tasks whose retention ended at or before $1 (now), with their
-- watches, discounted from the counts; forgets minutes of throughput older than two hours.
-- Returns how many tasks went.
WITH doomed AS (
    SELECT id FROM {schema}.tasks
    WHERE expires_at <= $1
    ORDER BY expires_at
    LIMIT $2
    FOR UPDATE SKIP LOCKED
),
purged AS (
    DELETE FROM {schema}.tasks AS t USING doomed AS d WHERE t.id = d.id
    RETURNING t.id, t.job, t.status
),
unwatched AS (
    DELETE FROM {schema}.watches AS w USING purged AS p WHERE w.task_id = p.id
),
forgotten AS (
    DELETE FROM {schema}.throughput WHERE minute < $1 / 60000 * 60000 - 7200000
),
{discount}
SELECT count(*) FROM purged
