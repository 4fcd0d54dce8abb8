-- longtask on SQLite: one row per task. Times are integer milliseconds since the Unix epoch, read
-- from the backend's injected clock (never from SQLite's own time functions).
CREATE TABLE longtask_tasks (
    -- UUIDv7 as 16 bytes: byte order is submission order.
    id               BLOB    NOT NULL PRIMARY KEY,
    job              TEXT    NOT NULL,
    params           TEXT    NOT NULL,
    -- queued, scheduled, running, retrying, succeeded, failed, cancelled
    status           TEXT    NOT NULL,
    priority         INTEGER NOT NULL,
    run_at           INTEGER NOT NULL,
    attempt          INTEGER NOT NULL,
    max_attempts     INTEGER NOT NULL,
    -- Fencing token: incremented by every claim of the task.
    token            INTEGER NOT NULL,
    -- Incremented by every visible change (status, progress): orders watch events.
    version          INTEGER NOT NULL,
    lease_owner      TEXT,
    lease_expires_at INTEGER,
    cancel_requested INTEGER NOT NULL,
    error_message    TEXT,
    error_attempt    INTEGER,
    error_at         INTEGER,
    -- The latest progress, as JSON.
    progress         TEXT,
    output           TEXT,
    created_at       INTEGER NOT NULL,
    started_at       INTEGER,
    finished_at      INTEGER,
    retention_ms     INTEGER NOT NULL,
    -- finished_at + retention, set when the task finishes; NULL while it is live.
    purge_at         INTEGER,
    owner            TEXT,
    idempotency_key  TEXT
) WITHOUT ROWID;

-- The claim query's exact order, over waiting tasks only: finished tasks are never scanned.
CREATE INDEX longtask_tasks_ready
    ON longtask_tasks (job, priority DESC, run_at, id)
    WHERE status IN ('queued', 'scheduled', 'retrying');

-- Running tasks by lease expiry, for the recovery of tasks whose worker was lost.
CREATE INDEX longtask_tasks_lease
    ON longtask_tasks (lease_expires_at)
    WHERE status = 'running';

-- Finished tasks by purge time.
CREATE INDEX longtask_tasks_purge
    ON longtask_tasks (purge_at)
    WHERE purge_at IS NOT NULL;

-- One task per (job, idempotency key) until it is purged.
CREATE UNIQUE INDEX longtask_tasks_idempotency
    ON longtask_tasks (job, idempotency_key)
    WHERE idempotency_key IS NOT NULL;
