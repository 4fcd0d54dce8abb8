-- Extends live leases ($1 ids, $2 tokens) until $3; returns the leases still held.
UPDATE {schema}.tasks AS t
SET lease_expires_at = $3
FROM unnest($1::uuid[], $2::bigint[]) AS l(id, token)
WHERE t.id = l.id AND t.token = l.token AND t.status = 'running'
RETURNING t.id, t.token, t.cancel_requested
