-- A task's status, whether it belongs to a group (as member or root), and its job.
SELECT status, (group_id IS NOT NULL OR open_members IS NOT NULL) AS grouped, job
FROM longtask_tasks WHERE id = ?1
