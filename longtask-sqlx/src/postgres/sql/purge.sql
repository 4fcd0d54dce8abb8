-- Deletes up to $2 finished tasks whose retention ended at or before $1 (now), with their
-- watches; returns how many.
WITH doomed AS (
    SELECT id FROM {schema}.tasks
    WHERE expires_at <= $1
    ORDER BY expires_at
    LIMIT $2
    FOR UPDATE SKIP LOCKED
),
purged AS (
    DELETE FROM {schema}.tasks AS t USING doomed AS d WHERE t.id = d.id RETURNING t.id
),
unwatched AS (
    DELETE FROM {schema}.watches AS w USING purged AS p WHERE w.task_id = p.id
)
SELECT count(*) FROM purged
