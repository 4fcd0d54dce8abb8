-- Which of the roots ?1 (JSON array of hex ids) are open groups: waiting, with a member count.
SELECT id FROM longtask_tasks
WHERE id IN (SELECT unhex(value) FROM json_each(?1))
  AND open_members IS NOT NULL AND status = 'scheduled'
