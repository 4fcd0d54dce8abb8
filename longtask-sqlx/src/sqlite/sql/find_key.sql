-- The live task holding an idempotency key.
SELECT id FROM longtask_tasks WHERE job = ?1 AND idempotency_key = ?2
