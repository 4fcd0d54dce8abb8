-- Stats (TaskStore::stats). Finished tasks are counted as they finish and as they go (purge,
-- delete, an operator's retry), per job and status, and per minute (kept two hours), by the
-- statements that change them, so that reading the counts never scans finished rows. Each
-- statement adds to the shard of its connection (pg_backend_pid() % 8), so that concurrent
-- statements rarely wait for one another's counter rows; a read sums the shards. Counts of
-- waiting and running tasks are read from the claim and lease indexes.
CREATE TABLE finished_counts (
    job    text    NOT NULL,
    status text    NOT NULL,
    shard  integer NOT NULL,
    n      bigint  NOT NULL,
    PRIMARY KEY (job, status, shard)
);

INSERT INTO finished_counts (job, status, shard, n)
SELECT job, status, 0, count(*) FROM tasks
WHERE status IN ('succeeded', 'failed', 'cancelled')
GROUP BY job, status;

CREATE TABLE throughput (
    -- The minute's start, in epoch milliseconds.
    minute bigint  NOT NULL,
    job    text    NOT NULL,
    status text    NOT NULL,
    shard  integer NOT NULL,
    n      bigint  NOT NULL,
    PRIMARY KEY (minute, job, status, shard)
);
