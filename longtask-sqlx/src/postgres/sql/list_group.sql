-- The members of group $7 in id order, from the group index: $1 job or NULL, $2 statuses or NULL,
-- $3 owner or NULL, $4 after id or NULL, $5 limit, $6 now (a scheduled task that is due counts as
-- queued).
SELECT {columns}
FROM {schema}.tasks
WHERE group_id = $7
  AND ($1::text IS NULL OR job = $1)
  AND ($2::text[] IS NULL
       OR (CASE WHEN status = 'scheduled' AND run_at <= $6 THEN 'queued' ELSE status END) = ANY ($2))
  AND ($3::text IS NULL OR owner = $3)
  AND ($4::uuid IS NULL OR id > $4)
ORDER BY id
LIMIT $5
