-- An operator's delete of the finished tasks among $1, discounted from the counts. Returns the
-- ids deleted.
WITH deleted AS (
    DELETE FROM {schema}.tasks
    WHERE id = ANY ($1::uuid[]) AND status IN ('succeeded', 'failed', 'cancelled')
    RETURNING id, job, status
),
{discount}
SELECT d.id FROM deleted AS d
