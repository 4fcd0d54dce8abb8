-- The status of the tasks $1, and whether each belongs to a group (as member or root).
SELECT id, status, (group_id IS NOT NULL OR open_members IS NOT NULL) AS grouped
FROM {schema}.tasks
WHERE id = ANY ($1::uuid[])
