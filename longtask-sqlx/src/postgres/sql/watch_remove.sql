-- Task $1 is no longer watched by $2.
DELETE FROM {schema}.watches WHERE task_id = $1 AND watcher = $2
