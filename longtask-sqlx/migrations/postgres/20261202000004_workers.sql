-- The workers registry: one row per live worker (its description as JSON), until expires_at
-- (epoch milliseconds) unless the worker refreshes it.
CREATE TABLE IF NOT EXISTS workers (
    id         text   PRIMARY KEY,
    info       text   NOT NULL,
    expires_at bigint NOT NULL
);
