-- A task's checkpoint state (JSON), if the task exists.
SELECT checkpoint FROM longtask_tasks WHERE id = ?1
