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
local t = redis.call('HMGET', key, 'ckey', 'run_at', 'created')
finalize(id, h, 'cancelled', now)
-- A task of a counted job's concurrency key leaves its parked set if it was parked; if it was
-- not, it may have been the key's next task to run, so the key's next parked task takes its
-- place (else that one could wait for a task of its key that never runs).
local ckey = t[1]
if ckey and is_counted(h[JOB]) then
  if redis.call('ZREM', k_parked(h[JOB], ckey), park_member(t[2] or t[3], id)) == 0 then
    unpark(h[JOB], ckey)
  end
end
flush()
return 'cancelled'
