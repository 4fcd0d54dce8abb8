-- Counts ?2 new members of the group whose root is ?1.
UPDATE longtask_tasks SET open_members = open_members + ?2 WHERE id = ?1
