-- A task's checkpoint state: $1 id.
SELECT checkpoint FROM {schema}.tasks WHERE id = $1
