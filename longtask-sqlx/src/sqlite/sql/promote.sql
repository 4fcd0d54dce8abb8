-- Marks the scheduled tasks due at ?1 as queued: they are now waiting like any other.
UPDATE longtask_tasks INDEXED BY longtask_tasks_scheduled
SET status = 'queued', version = version + 1
WHERE status = 'scheduled' AND run_at <= ?1
