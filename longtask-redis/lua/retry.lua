-- retry.lua: an operator's retry. Each failed or cancelled task that is in no group goes back
-- to queued, due now, with a fresh attempt budget (attempt 0): its cancellation request,
-- finish time and output are cleared, its last error kept, its token kept (so a lease of an
-- earlier attempt stays stale: the next claim issues a new one; a task never leased gets token
-- 0, which marks an entry it may still have in its submission list as stale, see claim.lua).
-- It no longer expires: its keys
-- lose their real-time expiry, and its entry in its finished list becomes stale (counted in
-- xs, which purge skips), so it is not purged at its old expiry.
-- ARGV: now, then the ids.
-- Returns one string per id: "r" retried, "n" not found, "g" in a group (a member or a root),
-- or the status of a task that is not failed or cancelled.
local now = ARGV[1]
local out = {}
for i = 2, #ARGV do
  local id = ARGV[i]
  local key = k_task(id)
  local h = redis.call('HMGET', key, 'status', 'job', 'prio', 'ikey', 'grp', 'open', 'xs', 'token')
  local status = h[1]
  if not status then
    out[#out + 1] = 'n'
  elseif status ~= 'failed' and status ~= 'cancelled' then
    out[#out + 1] = status
  elseif h[5] or h[6] then
    out[#out + 1] = 'g'
  else
    redis.call('HSET', key, 'status', 'queued', 'run_at', now,
      'xs', fmt((tonumber(h[7]) or 0) + 1), 'token', h[8] or '0')
    redis.call('HDEL', key, 'attempt', 'cancel', 'finished', 'output')
    redis.call('PERSIST', key)
    if h[4] then
      local ik = k_idem(h[2], string.sub(h[4], 2))
      if redis.call('GET', ik) == id then
        redis.call('PERSIST', ik)
      end
    end
    moved(h[2], status, 'queued')
    enqueue(id, h[2], h[3], now, now)
    publish_status(id, 'queued')
    out[#out + 1] = 'r'
  end
end
flush()
return out
