-- Adds to the counts of finished tasks. ?1: JSON array of {job, status, n} (n may be negative:
-- tasks purged, deleted or retried).
WITH d (v) AS MATERIALIZED (SELECT value FROM json_each(?1))
INSERT INTO longtask_finished (job, status, n)
SELECT d.v ->> 'job', d.v ->> 'status', d.v ->> 'n' FROM d WHERE true
ON CONFLICT (job, status) DO UPDATE SET n = n + excluded.n
