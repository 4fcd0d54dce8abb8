-- cancel.lua: cancels a waiting task at once, or requests cancellation of a running one.
-- ARGV: now, id. Returns "missing", "cancelled", "requested", or the final status it already had
-- prefixed with "finished:".
local now, id = ARGV[1], ARGV[2]
local key = k_task(id)
local h = redis.call('HMGET', key, unpack(LEASED_FIELDS))
local status = h[STATUS]
if not status then
  return 'missing'
end
if is_final(status) then
  return 'finished:' .. status
end
if status == 'running' then
  redis.call('HSET', key, 'cancel', '1')
  return 'requested'
end
dequeue(id, h[JOB], h[PRIO])
finalize(id, h, 'cancelled', now)
flush()
return 'cancelled'
