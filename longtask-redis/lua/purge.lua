-- purge.lua: deletes up to `limit` finished tasks whose retention has ended by the caller's
-- clock (the expiring set's score is finished + retention), with their idempotency keys, and
-- ends their watchers' streams. Tasks that Redis already expired in real time are cleaned up
-- from the indexes here too.
-- ARGV: now, limit. Returns how many were purged.
local now, limit = ARGV[1], tonumber(ARGV[2])
local ids = redis.call('ZRANGEBYSCORE', k_expiring, '-inf', now, 'LIMIT', 0, limit)
for _, id in ipairs(ids) do
  local key = k_task(id)
  local h = redis.call('HMGET', key, 'job', 'ikey')
  if h[2] and h[2] ~= '' then
    local ik = k_idem(h[1], string.sub(h[2], 2))
    if redis.call('GET', ik) == id then
      redis.call('DEL', ik)
    end
  end
  redis.call('DEL', key)
  publish_task(id, 'x')
end
zrem_many(k_all, ids)
zrem_many(k_expiring, ids)
return #ids
