-- A task's latest progress (JSON), if the task exists.
SELECT progress FROM longtask_tasks WHERE id = ?1
