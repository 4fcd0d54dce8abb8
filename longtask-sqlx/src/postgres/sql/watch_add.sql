-- Marks task $1 as watched by $2 (a backend instance), if the task exists.
INSERT INTO {schema}.watches (task_id, watcher)
SELECT $1, $2
WHERE EXISTS (SELECT 1 FROM {schema}.tasks WHERE id = $1)
ON CONFLICT DO NOTHING
