-- Makes a group root whose last member ended due at ?2 (its completion job runs).
UPDATE longtask_tasks
SET status = 'queued', run_at = ?2, version = version + 1
WHERE id = ?1 AND status = 'scheduled'
