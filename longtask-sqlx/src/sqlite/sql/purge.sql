-- Deletes up to ?2 finished tasks whose purge time (finished_at + retention) is at or before ?1;
-- returns each one's job and status (to discount them).
DELETE FROM longtask_tasks
WHERE id IN (
    SELECT id FROM longtask_tasks INDEXED BY longtask_tasks_purge
    WHERE purge_at <= ?1
    ORDER BY purge_at
    LIMIT ?2
)
RETURNING job, status
