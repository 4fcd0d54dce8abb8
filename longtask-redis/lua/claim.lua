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
      redis.call('ZADD', k_ready(h[2]), 0, ready_member(h[3], h[4], id))
    end
  end
  zrem_many(k_delayed, due)
end

-- 2. Take the best `limit` ready members across the requested jobs.
local members = {}
if #ARGV == 6 then
  local popped = redis.call('ZPOPMIN', k_ready(ARGV[6]), limit)
  for i = 1, #popped, 2 do
    members[#members + 1] = popped[i]
  end
else
  local candidates = {}
  local from = {}
  for j = 6, #ARGV do
    local key = k_ready(ARGV[j])
    for _, m in ipairs(redis.call('ZRANGE', key, 0, limit - 1)) do
      candidates[#candidates + 1] = m
      from[m] = key
    end
  end
  table.sort(candidates)
  for i = 1, math.min(limit, #candidates) do
    local m = candidates[i]
    redis.call('ZREM', from[m], m)
    members[#members + 1] = m
  end
end

-- 3. Lease them.
local out = {}
local running = {}
local owner = '+' .. worker
for _, m in ipairs(members) do
  local id = string.sub(m, -36)
  local key = k_task(id)
  local h = redis.call('HMGET', key, 'status', 'job', 'params', 'attempt', 'max', 'token')
  if h[1] and is_waiting(h[1]) then
    local attempt = fmt((tonumber(h[4]) or 0) + 1)
    local token = fmt((tonumber(h[6]) or 0) + 1)
    redis.call('HSET', key, 'status', 'running', 'attempt', attempt, 'token', token,
      'lo', owner, 'lx', expires, 'started', now)
    running[#running + 1] = expires
    running[#running + 1] = id
    publish_status(id, 'running')
    out[#out + 1] = id
    out[#out + 1] = token
    out[#out + 1] = h[2]
    out[#out + 1] = h[3]
    out[#out + 1] = attempt
    out[#out + 1] = h[5]
  end
end
zadd_many(k_running, running)
return out
