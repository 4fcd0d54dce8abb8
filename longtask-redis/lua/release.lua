-- release.lua: gives leased tasks back unrun: queued, due now, attempt not counted.
-- ARGV: now, then 2 per lease: id, token. Returns one integer per lease: 1 applied, 0 stale.
local now = ARGV[1]
local out = {}
for i = 2, #ARGV, 2 do
  local id = ARGV[i]
  local h = leased(id, ARGV[i + 1])
  if h then
    complete(id, h)
    local attempt = math.max((tonumber(h[ATTEMPT]) or 0) - 1, 0)
    redis.call('HSET', k_task(id), 'status', 'queued', 'attempt', fmt(attempt), 'run_at', now)
    stop_running(id, h)
    moved(h[JOB], 'running', 'queued')
    enqueue(id, h[JOB], h[PRIO], now, now)
    publish_status(id, 'queued')
    out[#out + 1] = 1
  else
    out[#out + 1] = 0
  end
end
flush()
return out
