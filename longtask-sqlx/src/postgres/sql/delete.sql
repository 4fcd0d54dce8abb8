-- An operator's delete of the finished tasks among $1. Returns the ids deleted.
DELETE FROM {schema}.tasks
WHERE id = ANY ($1::uuid[]) AND status IN ('succeeded', 'failed', 'cancelled')
RETURNING id
