-- Waiting tasks per job, through the claim index: queued (with scheduled ones due at $1),
-- scheduled for later, retrying.
SELECT job,
       count(*) FILTER (WHERE status = 'queued' OR (status = 'scheduled' AND run_at <= $1)),
       count(*) FILTER (WHERE status = 'scheduled' AND run_at > $1),
       count(*) FILTER (WHERE status = 'retrying')
FROM {schema}.tasks
WHERE status IN ('queued', 'scheduled', 'retrying')
GROUP BY job
