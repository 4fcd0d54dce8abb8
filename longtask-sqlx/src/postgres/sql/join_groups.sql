-- Counts new members of groups: $1 root ids, $2 members each.
UPDATE {schema}.tasks AS r
SET open_members = r.open_members + j.n
FROM unnest($1::uuid[], $2::bigint[]) AS j(id, n)
WHERE r.id = j.id
