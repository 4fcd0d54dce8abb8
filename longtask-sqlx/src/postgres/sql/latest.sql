-- A task's latest progress: $1 id.
SELECT progress::text FROM {schema}.tasks WHERE id = $1
