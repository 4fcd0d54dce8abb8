-- Locks a task for cancel and reads its status: $1 id.
SELECT status FROM {schema}.tasks WHERE id = $1 FOR UPDATE
