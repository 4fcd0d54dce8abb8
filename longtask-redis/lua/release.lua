-- release.lua: gives leased tasks back unrun: queued, due now, attempt not counted.
-- ARGV: now, then 2 per lease: id, token. Returns one integer per lease: 1 applied, 0 stale.
local now = ARGV[1]
local out = {}
local any = false
for i = 2, #ARGV, 2 do
  local id = ARGV[i]
  local h = leased(id, ARGV[i + 1])
  if h then
    complete(id, h)
    local attempt = math.max((tonumber(h[3]) or 0) - 1, 0)
    redis.call('HSET', k_task(id), 'status', 'queued', 'attempt', fmt(attempt), 'run_at', now)
    left_running[#left_running + 1] = id
    enqueue(id, h[7], h[9], now, now)
    publish_status(id, 'queued')
    any = true
    out[#out + 1] = 1
  else
    out[#out + 1] = 0
  end
end
flush()
if any then
  redis.call('PUBLISH', ch_work, '1')
end
return out
