-- Running tasks per job.
SELECT job, count(*) FROM longtask_tasks INDEXED BY longtask_tasks_lease
WHERE status = 'running'
GROUP BY job
