-- purge.lua: deletes up to `limit` finished tasks whose retention has ended by the caller's
-- clock (finished + retention <= now), with their idempotency keys, and ends their watchers'
-- streams. Tasks that Redis already expired in real time are cleaned up from the indexes here
-- too (and counted).
-- ARGV: now, limit. Returns {purged, more}: how many were purged, and 1 when retention periods
-- beyond those visited remain (the next call visits them), else 0.
--
-- Each retention period's list is in finishing order, so its head is the next to expire: a
-- call stops reading a list at its first task still kept. A call visits at most MAX_LISTS
-- retention periods, resuming after the last one visited when there are more (so its cost
-- does not grow with the number of distinct periods in use).
local now, limit = ARGV[1], tonumber(ARGV[2])
local now_n = tonumber(now)
local MAX_LISTS = 100
local STEP = 100 -- list entries read per LRANGE

local k_cursor = k_retentions .. ':next'
local from = redis.call('GET', k_cursor)
local rets
if from then
  rets = redis.call('ZRANGEBYSCORE', k_retentions, '(' .. from, '+inf', 'LIMIT', 0, MAX_LISTS)
else
  rets = redis.call('ZRANGEBYSCORE', k_retentions, '-inf', '+inf', 'LIMIT', 0, MAX_LISTS)
end
local more = 0
if #rets == MAX_LISTS then
  redis.call('SET', k_cursor, rets[#rets])
  more = 1
else
  redis.call('DEL', k_cursor)
end

local purged = 0
local gone = {} -- ids taken off the lists, to take out of the listing index too
for _, ret in ipairs(rets) do
  if purged >= limit then break end
  local key = k_finished(ret)
  local ret_n = tonumber(ret) or 0
  local blocked = false
  while not blocked and purged < limit do
    local ids = redis.call('LRANGE', key, 0, math.min(STEP, limit - purged) - 1)
    if #ids == 0 then
      redis.call('ZREM', k_retentions, ret)
      break
    end
    local popped = 0
    for _, id in ipairs(ids) do
      local task = k_task(id)
      local h = redis.call('HMGET', task, 'job', 'ikey', 'finished')
      if h[3] and tonumber(h[3]) + ret_n > now_n then
        blocked = true
        break
      end
      if h[3] then
        if h[2] and h[2] ~= '' then
          local ik = k_idem(h[1], string.sub(h[2], 2))
          if redis.call('GET', ik) == id then
            redis.call('DEL', ik)
          end
        end
        redis.call('DEL', task)
        publish_task(id, 'x')
      end
      popped = popped + 1
      purged = purged + 1
      gone[#gone + 1] = id
    end
    if popped > 0 then
      redis.call('LTRIM', key, popped, -1)
    end
  end
end
zrem_many(k_all, gone)
return { purged, more }
