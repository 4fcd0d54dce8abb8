-- recover.lua: recovers up to `limit` running tasks whose lease has expired: retried at once
-- if attempts remain, cancelled if cancellation was requested, failed otherwise; the lost
-- attempt joins the task's attempt history.
-- ARGV: now, limit. Returns how many were recovered.
local now, limit = ARGV[1], tonumber(ARGV[2])
local expired = redis.call('ZRANGEBYSCORE', k_running, '-inf', now, 'LIMIT', 0, limit)
local count = 0
for _, id in ipairs(expired) do
  local h = redis.call('HMGET', k_task(id), unpack(LEASED_FIELDS))
  if h[STATUS] == 'running' then
    local message = 'attempt ' .. (h[ATTEMPT] or '0') ..
      ' was lost: its worker stopped renewing the lease (crashed, killed or stalled)'
    fail_attempt(id, h, 'lost', message, now, now)
    count = count + 1
  else
    redis.call('ZREM', k_running, id)
  end
end
flush()
return count
