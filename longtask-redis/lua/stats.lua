-- stats.lua: every job's counts per status, the earliest run time of its due waiting tasks, and
-- its tasks finished per minute since a given minute.
-- ARGV: now, the first minute (epoch milliseconds).
-- Returns three flat lists: {job, status, n, ...}, {job, run_at, ...}, {field "<minute>|<status>|
-- <job>", n, ...}.
--
-- Delayed tasks that are due are promoted first (as a claim would), so that a scheduled task
-- whose time has come counts as queued. Entries at the head of a submission list whose task was
-- claimed or cancelled since are dropped on the way (as a claim would), so that the head is the
-- earliest task still waiting.
local now, first_minute = ARGV[1], ARGV[2]
while promote_due(now, 1000) == 1000 do end
flush_counts()

local counts = {}
local oldest = {}
for _, job in ipairs(redis.call('SMEMBERS', k_jobs)) do
  local by_status = redis.call('HGETALL', k_status_counts(job))
  for i = 1, #by_status, 2 do
    if tonumber(by_status[i + 1]) > 0 then
      counts[#counts + 1] = job
      counts[#counts + 1] = by_status[i]
      counts[#counts + 1] = by_status[i + 1]
    end
  end
  local earliest = nil
  for _, prio in ipairs(redis.call('ZRANGE', k_prios(job), 0, -1)) do
    local first = redis.call('ZRANGE', k_ready(job, prio), 0, 0, 'WITHSCORES')
    if first[2] then
      local at = tonumber(first[2])
      if not earliest or at < earliest then earliest = at end
    end
    local lk = k_submitted(job, prio)
    while true do
      local head = redis.call('LRANGE', lk, 0, 1)
      if not head[2] then break end
      local t = redis.call('HMGET', k_task(head[2]), 'status', 'token')
      if t[1] and is_waiting(t[1]) and not t[2] then
        local at = tonumber(head[1])
        if not earliest or at < earliest then earliest = at end
        break
      end
      redis.call('LTRIM', lk, 2, -1)
    end
  end
  if earliest then
    oldest[#oldest + 1] = job
    oldest[#oldest + 1] = fmt(earliest)
  end
end

local minutes = {}
local fields = redis.call('ZRANGEBYSCORE', k_throughput_minutes, first_minute, '+inf')
for from = 1, #fields, CHUNK do
  local to = math.min(from + CHUNK - 1, #fields)
  local values = redis.call('HMGET', k_throughput, unpack(fields, from, to))
  for i = from, to do
    local n = values[i - from + 1]
    if n then
      minutes[#minutes + 1] = fields[i]
      minutes[#minutes + 1] = n
    end
  end
end
return { counts, oldest, minutes }
