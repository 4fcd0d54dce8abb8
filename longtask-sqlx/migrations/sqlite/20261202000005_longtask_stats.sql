-- Stats (TaskStore::stats). Finished tasks are counted as they finish and as they go (purge,
-- delete, an operator's retry), per job and status, so that reading the counts never scans
-- finished rows; tasks finished per minute are counted the same way (kept two hours), and stay
-- counted when the tasks are purged. Waiting tasks are counted from the claim index, which now
-- carries each task's status so that the count reads the index alone.
CREATE TABLE longtask_finished (
    job    TEXT    NOT NULL,
    status TEXT    NOT NULL,
    n      INTEGER NOT NULL,
    PRIMARY KEY (job, status)
) WITHOUT ROWID;

INSERT INTO longtask_finished (job, status, n)
SELECT job, status, count(*) FROM longtask_tasks
WHERE status IN ('succeeded', 'failed', 'cancelled')
GROUP BY job, status;

CREATE TABLE longtask_throughput (
    -- The minute's start, in epoch milliseconds.
    minute INTEGER NOT NULL,
    job    TEXT    NOT NULL,
    status TEXT    NOT NULL,
    n      INTEGER NOT NULL,
    PRIMARY KEY (minute, job, status)
) WITHOUT ROWID;

DROP INDEX longtask_tasks_ready;
CREATE INDEX longtask_tasks_ready
    ON longtask_tasks (job, priority DESC, run_at, id, status)
    WHERE status IN ('queued', 'scheduled', 'retrying');
