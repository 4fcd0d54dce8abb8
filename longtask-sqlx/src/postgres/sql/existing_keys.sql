-- The tasks holding idempotency keys: $1 jobs, $2 keys (pairwise).
SELECT k.job, k.idempotency_key, t.id
FROM unnest($1::text[], $2::text[]) AS k(job, idempotency_key)
JOIN {schema}.tasks AS t ON t.job = k.job AND t.idempotency_key = k.idempotency_key
