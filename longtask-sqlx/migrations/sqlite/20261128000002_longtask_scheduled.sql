-- Scheduled tasks by due time, so that a claim marks those that have come due as queued (as
-- every backend shows them) without scanning other tasks.
CREATE INDEX longtask_tasks_scheduled
    ON longtask_tasks (run_at)
    WHERE status = 'scheduled';
