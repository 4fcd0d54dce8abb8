-- heartbeat.lua: extends live leases.
-- ARGV: expires (new lease end), then 2 per lease: id, token.
-- Returns one integer per lease: -1 lost, 0 held, 1 held with cancellation requested.
local expires = ARGV[1]
local out = {}
for i = 2, #ARGV, 2 do
  local id, token = ARGV[i], ARGV[i + 1]
  local key = k_task(id)
  local h = redis.call('HMGET', key, 'status', 'token', 'cancel')
  if h[1] == 'running' and h[2] == token then
    redis.call('HSET', key, 'lx', expires)
    redis.call('ZADD', k_running, expires, id)
    if h[3] == '1' then out[#out + 1] = 1 else out[#out + 1] = 0 end
  else
    out[#out + 1] = -1
  end
end
return out
