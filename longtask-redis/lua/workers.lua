-- workers.lua: removes the entries that ended (until <= now), then returns the live ones (see
-- register_worker.lua).
-- ARGV: now. Returns the live workers' info (JSON), in no particular order.
local k_workers, k_until = base .. 'w', base .. 'wx'
local ended = redis.call('ZRANGEBYSCORE', k_until, '-inf', ARGV[1])
if #ended > 0 then
  call_many('HDEL', k_workers, ended)
  zrem_many(k_until, ended)
end
return redis.call('HVALS', k_workers)
