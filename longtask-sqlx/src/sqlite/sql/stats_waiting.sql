-- Waiting tasks per job, from the claim index alone: queued (with scheduled ones due at ?1),
-- scheduled for later, retrying.
SELECT job,
       sum(status = 'queued' OR (status = 'scheduled' AND run_at <= ?1)) AS queued,
       sum(status = 'scheduled' AND run_at > ?1) AS scheduled,
       sum(status = 'retrying') AS retrying
FROM longtask_tasks INDEXED BY longtask_tasks_ready
WHERE status IN ('queued', 'scheduled', 'retrying')
GROUP BY job
