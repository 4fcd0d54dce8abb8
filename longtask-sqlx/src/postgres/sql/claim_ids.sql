-- Claims the tasks $1 (chosen and locked by a claim under concurrency limits, in the same
-- transaction) for worker $4 until $5, at $2 (now); $3 caps their number; $6 is the NOTIFY
-- channel.
WITH picked AS (
    SELECT p.id FROM unnest($1::uuid[]) AS p(id) LIMIT $3
),
{claim_lease}
