-- A task's status and whether it belongs to a group (as member or root).
SELECT status, (group_id IS NOT NULL OR open_members IS NOT NULL) AS grouped
FROM longtask_tasks WHERE id = ?1
