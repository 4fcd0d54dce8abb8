-- claim.lua: claims up to `limit` due tasks of the given jobs under new leases.
-- ARGV: now, expires (lease end), worker, limit, promote (max delayed tasks to promote), jobs...
-- Returns a flat list, 6 per task: id, token, job, params, attempt, max.
local now, expires, worker = ARGV[1], ARGV[2], ARGV[3]
local limit, promote = tonumber(ARGV[4]), tonumber(ARGV[5])

-- 1. Promote delayed tasks that are now due, a bounded chunk per call, earliest first.
local due = redis.call('ZRANGEBYSCORE', k_delayed, '-inf', now, 'LIMIT', 0, promote)
if #due > 0 then
  for _, id in ipairs(due) do
    local key = k_task(id)
    local h = redis.call('HMGET', key, 'status', 'job', 'prio', 'run_at')
    if h[1] and is_waiting(h[1]) then
      if h[1] == 'scheduled' then
        redis.call('HSET', key, 'status', 'queued')
      end
      local prio = h[3] or '0'
      redis.call('ZADD', k_ready(h[2], prio), h[4] or now, id)
      redis.call('ZADD', k_prios(h[2]), -tonumber(prio), prio)
    end
  end
  zrem_many(k_delayed, due)
end

-- 2. Take the best `limit` due tasks across the requested jobs: higher priority first, then
-- earlier run_at, then earlier submission (id).
local ids = {}
local jobs = {} -- the job of each id (its ready set says it)
if #ARGV == 6 then
  local job = ARGV[6]
  local pk = k_prios(job)
  local remaining = limit
  for _, prio in ipairs(redis.call('ZRANGE', pk, 0, -1)) do
    local popped = redis.call('ZPOPMIN', k_ready(job, prio), remaining)
    local got = #popped / 2
    for i = 1, #popped, 2 do
      ids[#ids + 1] = popped[i]
      jobs[#jobs + 1] = job
    end
    if got < remaining then
      redis.call('ZREM', pk, prio) -- that priority's set is empty now
    end
    remaining = remaining - got
    if remaining == 0 then break end
  end
else
  local candidates = {}
  for j = 6, #ARGV do
    local job = ARGV[j]
    local pk = k_prios(job)
    local found = 0
    for _, prio in ipairs(redis.call('ZRANGE', pk, 0, -1)) do
      local key = k_ready(job, prio)
      local entries = redis.call('ZRANGE', key, 0, limit - found - 1, 'WITHSCORES')
      if #entries == 0 then
        redis.call('ZREM', pk, prio)
      end
      local p = tonumber(prio)
      for i = 1, #entries, 2 do
        candidates[#candidates + 1] = { -p, tonumber(entries[i + 1]), entries[i], key, job }
      end
      found = found + #entries / 2
      if found >= limit then break end
    end
  end
  table.sort(candidates, function(a, b)
    if a[1] ~= b[1] then return a[1] < b[1] end
    if a[2] ~= b[2] then return a[2] < b[2] end
    return a[3] < b[3]
  end)
  for i = 1, math.min(limit, #candidates) do
    local c = candidates[i]
    redis.call('ZREM', c[4], c[3])
    ids[#ids + 1] = c[3]
    jobs[#jobs + 1] = c[5]
  end
end

-- 3. Lease them.
local out = {}
local running = {}
local owner = '+' .. worker
for n, id in ipairs(ids) do
  local key = k_task(id)
  local h = redis.call('HMGET', key, 'status', 'params', 'attempt', 'max', 'token')
  if h[1] and is_waiting(h[1]) then
    local attempt, token = '1', '1' -- a first claim needs no number formatting
    if h[3] then attempt = fmt((tonumber(h[3]) or 0) + 1) end
    if h[5] then token = fmt((tonumber(h[5]) or 0) + 1) end
    redis.call('HSET', key, 'status', 'running', 'attempt', attempt, 'token', token,
      'lo', owner, 'lx', expires, 'started', now)
    running[#running + 1] = expires
    running[#running + 1] = id
    publish_status(id, 'running')
    out[#out + 1] = id
    out[#out + 1] = token
    out[#out + 1] = jobs[n]
    out[#out + 1] = h[2]
    out[#out + 1] = attempt
    out[#out + 1] = h[4]
  end
end
zadd_many(k_running, running)
return out
