-- delete.lua: an operator's delete. Each finished task goes now, as purge removes it: its hash
-- (record, output, progress, checkpoint), its idempotency key (free again), its entries in the
-- listing and group indexes; its watchers' streams end. Its entry in its finished list stays
-- behind, and purge drops it without counting it (the task is no longer in the listing index).
-- ARGV: the ids.
-- Returns one string per id: "d" deleted, "n" not found, or the status of a task that has not
-- finished.
local out = {}
for _, id in ipairs(ARGV) do
  local key = k_task(id)
  local h = redis.call('HMGET', key, 'status', 'job', 'ikey', 'grp')
  local status = h[1]
  if not status then
    out[#out + 1] = 'n'
  elseif not is_final(status) then
    out[#out + 1] = status
  else
    if h[3] and h[3] ~= '' then
      local ik = k_idem(h[2], string.sub(h[3], 2))
      if redis.call('GET', ik) == id then
        redis.call('DEL', ik)
      end
    end
    if h[4] then
      redis.call('ZREM', k_group(h[4]), id)
    end
    redis.call('DEL', key)
    redis.call('ZREM', k_all, id)
    moved(h[2], status, nil)
    publish_task(id, 'x')
    out[#out + 1] = 'd'
  end
end
flush_counts()
return out
