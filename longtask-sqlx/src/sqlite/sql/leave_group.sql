-- Discounts ?2 members of the group whose root is ?1 that reached a final status; returns what
-- firing the root needs.
UPDATE longtask_tasks
SET open_members = open_members - ?2
WHERE id = ?1 AND open_members IS NOT NULL
RETURNING open_members, status, job, retention_ms, version
