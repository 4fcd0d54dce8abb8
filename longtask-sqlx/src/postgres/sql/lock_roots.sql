-- Locks the roots $1 of the groups a batch of new members joins, in id order (the order every
-- statement that counts a group down locks them in), and returns those that are open: waiting,
-- with a member count.
SELECT id, (status = 'scheduled' AND open_members IS NOT NULL) AS open
FROM {schema}.tasks
WHERE id = ANY ($1::uuid[])
ORDER BY id
FOR UPDATE
