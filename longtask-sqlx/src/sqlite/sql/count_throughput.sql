-- Adds tasks that finished to their minute. ?1: JSON array of {job, status, minute, n}.
WITH d (v) AS MATERIALIZED (SELECT value FROM json_each(?1))
INSERT INTO longtask_throughput (minute, job, status, n)
SELECT d.v ->> 'minute', d.v ->> 'job', d.v ->> 'status', d.v ->> 'n' FROM d WHERE true
ON CONFLICT (minute, job, status) DO UPDATE SET n = n + excluded.n
