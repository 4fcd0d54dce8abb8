-- Watched tasks changed since the change counter last seen (the watch poller). ?1: JSON array of
-- [id (hex), version]. A purged task comes back with NULL status and version.
SELECT unhex(w.value ->> 0) AS id, t.status, t.progress, t.version
FROM json_each(?1) AS w
LEFT JOIN longtask_tasks AS t ON t.id = unhex(w.value ->> 0)
WHERE t.id IS NULL OR t.version > (w.value ->> 1)
