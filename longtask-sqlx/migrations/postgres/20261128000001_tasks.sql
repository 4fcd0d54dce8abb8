-- longtask: the tasks table and the indexes its queries use.
--
-- Applied inside the backend's schema (search_path is set to it while migrating), so no name
-- here is schema-qualified. All times are milliseconds since the Unix epoch (bigint), read from
-- the backend's clock, never from now().

CREATE TABLE tasks (
    id                 uuid    PRIMARY KEY,
    job                text    NOT NULL,
    params             text    NOT NULL,
    -- queued, scheduled, running, retrying, succeeded, failed, cancelled
    status             text    NOT NULL,
    priority           integer NOT NULL,
    run_at             bigint  NOT NULL,
    attempt            bigint  NOT NULL DEFAULT 0,
    max_attempts       bigint  NOT NULL,
    -- the fencing token of the latest claim: previous + 1
    token              bigint  NOT NULL DEFAULT 0,
    lease_owner        text,
    lease_expires_at   bigint,
    cancel_requested   boolean NOT NULL DEFAULT false,
    last_error         text,
    last_error_attempt bigint,
    last_error_at      bigint,
    -- the latest Progress as serde JSON (json, not jsonb: kept byte for byte)
    progress           json,
    output             text,
    created_at         bigint  NOT NULL,
    started_at         bigint,
    finished_at        bigint,
    retention_ms       bigint  NOT NULL,
    -- finished_at + retention, set when the task finishes: what purge looks at
    expires_at         bigint,
    owner              text,
    idempotency_key    text,
    CONSTRAINT tasks_status_check CHECK (status IN
        ('queued', 'scheduled', 'running', 'retrying', 'succeeded', 'failed', 'cancelled'))
);

-- The claim query: waiting tasks of one job in claim order. Finished and running tasks are not
-- in it, so its size (and the claim's cost) does not grow with history.
CREATE INDEX tasks_waiting ON tasks (job, priority DESC, run_at, id)
    WHERE status IN ('queued', 'scheduled', 'retrying');

-- recover_expired: running tasks by lease expiry.
CREATE INDEX tasks_running ON tasks (lease_expires_at) WHERE status = 'running';

-- purge: finished tasks by the time their retention ends.
CREATE INDEX tasks_expiring ON tasks (expires_at) WHERE expires_at IS NOT NULL;

-- Idempotency keys are unique per job.
CREATE UNIQUE INDEX tasks_idempotency ON tasks (job, idempotency_key)
    WHERE idempotency_key IS NOT NULL;

-- list(): by owner (job and status filters use the indexes above or a scan in id order).
CREATE INDEX tasks_owner ON tasks (owner, id) WHERE owner IS NOT NULL;

-- Tasks someone is watching (a ProgressSink::watch stream is open somewhere): their status
-- changes and progress are sent with NOTIFY; other tasks' are not, so that busy queues do not
-- flood the notification channel.
CREATE TABLE watches (
    task_id uuid NOT NULL,
    watcher uuid NOT NULL,
    PRIMARY KEY (task_id, watcher)
);
