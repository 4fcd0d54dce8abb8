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

-- Whether the ready set's entry (run time zr, id zid) comes before the submission list's.
local function before(zr, zid, lr, lid)
  return zr < lr or (zr == lr and zid < lid)
end

-- Takes up to `n` tasks of one job and priority in claim order (run time, then id), merging
-- the ready set and the submission list, out of both; appends their ids to `ids` and the job
-- to `jobs`. Returns how many it took (fewer than `n`: both are empty now).
local function take(job, prio, n, ids, jobs)
  local rk, lk = k_ready(job, prio), k_submitted(job, prio)
  local z = redis.call('ZRANGE', rk, 0, n - 1, 'WITHSCORES')
  local l = redis.call('LRANGE', lk, 0, 2 * n - 1)
  local zi, li, taken = 1, 1, 0
  local from_z = {}
  while taken < n and (zi <= #z or li <= #l) do
    if li > #l or (zi <= #z and before(tonumber(z[zi + 1]), z[zi], tonumber(l[li]), l[li + 1])) then
      ids[#ids + 1] = z[zi]
      from_z[#from_z + 1] = z[zi]
      zi = zi + 2
    else
      ids[#ids + 1] = l[li + 1]
      li = li + 2
    end
    jobs[#jobs + 1] = job
    taken = taken + 1
  end
  zrem_many(rk, from_z)
  if li > 1 then
    redis.call('LTRIM', lk, li - 1, -1)
  end
  return taken
end

-- The first `n` tasks of one job and priority in claim order, as candidates {-priority, run
-- time, id, job, priority}, without taking them.
local function peek(job, prio, n, candidates)
  local z = redis.call('ZRANGE', k_ready(job, prio), 0, n - 1, 'WITHSCORES')
  local l = redis.call('LRANGE', k_submitted(job, prio), 0, 2 * n - 1)
  local p = -tonumber(prio)
  local zi, li, found = 1, 1, 0
  while found < n and (zi <= #z or li <= #l) do
    local zr, lr = tonumber(z[zi + 1]), tonumber(l[li])
    if li > #l or (zi <= #z and before(zr, z[zi], lr, l[li + 1])) then
      candidates[#candidates + 1] = { p, zr, z[zi], job, prio }
      zi = zi + 2
    else
      candidates[#candidates + 1] = { p, lr, l[li + 1], job, prio }
      li = li + 2
    end
    found = found + 1
  end
  return found
end

-- 2. Select the best `n` due tasks across the requested jobs (higher priority first, then
-- earlier run_at, then earlier submission: id) and take them out of the queues; appends their
-- ids and jobs to `ids` and `jobs`. Returns whether any was found.
local function select(n, ids, jobs)
  if #ARGV == 6 then
    local job = ARGV[6]
    local pk = k_prios(job)
    local remaining = n
    for _, prio in ipairs(redis.call('ZRANGE', pk, 0, -1)) do
      local got = take(job, prio, remaining, ids, jobs)
      if got < remaining then
        redis.call('ZREM', pk, prio) -- that priority has nothing due any more
      end
      remaining = remaining - got
      if remaining == 0 then break end
    end
    return remaining < n
  end
  local candidates = {}
  for j = 6, #ARGV do
    local job = ARGV[j]
    local pk = k_prios(job)
    local found = 0
    for _, prio in ipairs(redis.call('ZRANGE', pk, 0, -1)) do
      local got = peek(job, prio, n - found, candidates)
      if got == 0 then
        redis.call('ZREM', pk, prio)
      end
      found = found + got
      if found >= n then break end
    end
  end
  table.sort(candidates, function(a, b)
    if a[1] ~= b[1] then return a[1] < b[1] end
    if a[2] ~= b[2] then return a[2] < b[2] end
    return a[3] < b[3]
  end)
  -- The best n hold a prefix of each job and priority's claim order: take that many of each.
  local counts = {}
  local order = {}
  for i = 1, math.min(n, #candidates) do
    local c = candidates[i]
    local key = c[4] .. '\0' .. c[5]
    local count = counts[key]
    if not count then
      order[#order + 1] = c
      count = 0
    end
    counts[key] = count + 1
  end
  local taken_ids, taken_jobs = {}, {}
  for _, c in ipairs(order) do
    take(c[4], c[5], counts[c[4] .. '\0' .. c[5]], taken_ids, taken_jobs)
  end
  -- Lease in overall claim order.
  for i = 1, math.min(n, #candidates) do
    ids[#ids + 1] = candidates[i][3]
    jobs[#jobs + 1] = candidates[i][4]
  end
  return #candidates > 0
end

-- 3. Lease them. A popped task that is no longer waiting (cancelled while in a submission
-- list) is skipped, and more are selected in its place, examining at most `budget` entries.
-- If the budget runs out first, idle workers are woken to claim again at once (a claim that
-- comes back short otherwise makes a worker wait for its poll interval).
local out = {}
local running = {}
local owner = '+' .. worker
local leased = 0
local examined = 0
local budget = math.max(4 * limit, 1000)
local more = false
while true do
  local ids, jobs = {}, {}
  local any = select(limit - leased, ids, jobs)
  examined = examined + #ids
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
      leased = leased + 1
    end
  end
  if leased >= limit or not any then break end
  if examined >= budget then
    more = true
    break
  end
end
if more then
  redis.call('PUBLISH', ch_work, '1')
end
zadd_many(k_running, running)
return out
