-- The workers registry: one row per live worker (its description as JSON), until expires_at
-- (epoch milliseconds) unless the worker refreshes it.
CREATE TABLE longtask_workers (
    id         TEXT    NOT NULL PRIMARY KEY,
    info       TEXT    NOT NULL,
    expires_at INTEGER NOT NULL
) WITHOUT ROWID;
