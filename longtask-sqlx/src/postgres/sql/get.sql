-- One task: $1 id.
SELECT {columns}
FROM {schema}.tasks
WHERE id = $1
