-- What cancelling task ?1 needs: its status, progress, change counter, retention, group and job.
SELECT status, progress, version, retention_ms, group_id, job FROM longtask_tasks WHERE id = ?1
