-- The stored status of tasks: $1 ids.
SELECT id, status FROM {schema}.tasks WHERE id = ANY ($1)
