-- Deletes up to $2 finished tasks whose retention ended at or before $1 (now), with their
-- watches, discounted from the counts. Returns how many tasks went. (fold_throughput.sql then
-- folds minutes older than two hours into minute 0.)
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
{discount}
SELECT count(*) FROM purged
