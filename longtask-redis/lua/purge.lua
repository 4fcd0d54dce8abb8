-- purge.lua: deletes up to `limit` finished tasks whose retention has ended by the caller's
-- clock (finished + retention <= now), with their idempotency keys and their entries in the
-- listing and group indexes, and ends their watchers' streams. Tasks that Redis already expired
-- in real time are cleaned up from the listing index here too (and counted). Stale entries (of
-- tasks an operator retried, counted in their field xs, or deleted) are dropped on the way,
-- not counted, at most 4 x limit + 100 of them per call.
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
local stale = 0
local max_stale = 4 * limit + 100
local gone = {} -- ids purged, to take out of the listing index too
for _, ret in ipairs(rets) do
  if purged >= limit or stale >= max_stale then break end
  local key = k_finished(ret)
  local ret_n = tonumber(ret) or 0
  local blocked = false
  while not blocked and purged < limit and stale < max_stale do
    local ids = redis.call('LRANGE', key, 0, math.min(STEP, limit - purged) - 1)
    if #ids == 0 then
      redis.call('ZREM', k_retentions, ret)
      break
    end
    local popped = 0
    for _, entry in ipairs(ids) do
      local id, entry_status, entry_job = parse_finished_entry(entry)
      local task = k_task(id)
      local h = redis.call('HMGET', task, 'job', 'ikey', 'finished', 'xs', 'grp', 'status')
      if h[4] then
        -- An entry from before an operator's retry: the task is not due here.
        if tonumber(h[4]) > 1 then
          redis.call('HSET', task, 'xs', fmt(tonumber(h[4]) - 1))
        else
          redis.call('HDEL', task, 'xs')
        end
        stale = stale + 1
      elseif h[6] and not h[3] then
        -- Retried and not finished since (an entry of a task that has no xs left would be its
        -- current one, and it has none while waiting or running): nothing to purge.
        stale = stale + 1
      elseif h[3] and tonumber(h[3]) + ret_n > now_n then
        blocked = true
        break
      elseif h[3] then
        if h[2] and h[2] ~= '' then
          local ik = k_idem(h[1], string.sub(h[2], 2))
          if redis.call('GET', ik) == id then
            redis.call('DEL', ik)
          end
        end
        if h[5] then
          redis.call('ZREM', k_group(h[5]), id)
        end
        redis.call('DEL', task)
        moved(h[1], h[6], nil)
        publish_task(id, 'x')
        purged = purged + 1
        gone[#gone + 1] = id
      elseif redis.call('ZREM', k_all, id) == 1 then
        purged = purged + 1 -- expired by Redis in real time
        if entry_job then moved(entry_job, entry_status, nil) end
      else
        stale = stale + 1 -- deleted by an operator
      end
      popped = popped + 1
      if stale >= max_stale then break end
    end
    if popped > 0 then
      redis.call('LTRIM', key, popped, -1)
    end
  end
end
if stale >= max_stale then more = 1 end
zrem_many(k_all, gone)
flush_counts()
-- Minutes of throughput older than two hours go.
local old = redis.call('ZRANGEBYSCORE', k_throughput_minutes, '-inf',
  '(' .. fmt(math.floor(now_n / 60000) * 60000 - 7200000), 'LIMIT', 0, 1000)
if #old > 0 then
  call_many('HDEL', k_throughput, old)
  zrem_many(k_throughput_minutes, old)
end
return { purged, more }
