-- claim.lua: claims up to `limit` due tasks of the given jobs under new leases.
-- ARGV: now, expires (lease end), worker, limit, promote (max delayed tasks to promote), the
--   number of limited jobs, then 3 per limited job: job, max_running, max_running_per_key (""
--   for no limit), then the jobs to claim.
-- Returns a flat list, 7 per task: id, token, job, params, attempt, max, and the run time it was
-- due at.
local now, expires, worker = ARGV[1], ARGV[2], ARGV[3]
local limit, promote = tonumber(ARGV[4]), tonumber(ARGV[5])
local first_job = 7 + 3 * tonumber(ARGV[6])

-- 1. Promote delayed tasks that are now due, a bounded chunk per call, earliest first.
promote_due(now, promote)

-- Whether the ready set's entry (run time zr, id zid) comes before the submission list's.
local function before(zr, zid, lr, lid)
  return zr < lr or (zr == lr and zid < lid)
end

-- Takes up to `n` tasks of one job and priority in claim order (run time, then id), merging
-- the ready set and the submission list, out of both; appends their ids to `ids`, the job to
-- `jobs` and whether each came from the submission list to `listed`. Returns how many it took
-- (fewer than `n`: both are empty now).
--
-- A submission list entry is current only while its task has never been leased (every lease
-- sets a token, and so does an operator's retry of a task that was cancelled while its entry
-- waited in the list): an entry whose task has a token is stale, and skipped (such a task
-- waits in its ready set, in its new place).
local function take(job, prio, n, ids, jobs, listed)
  local rk, lk = k_ready(job, prio), k_submitted(job, prio)
  local z = redis.call('ZRANGE', rk, 0, n - 1, 'WITHSCORES')
  local l = redis.call('LRANGE', lk, 0, 2 * n - 1)
  local zi, li, taken = 1, 1, 0
  local from_z = {}
  while taken < n and (zi <= #z or li <= #l) do
    if li > #l or (zi <= #z and before(tonumber(z[zi + 1]), z[zi], tonumber(l[li]), l[li + 1])) then
      ids[#ids + 1] = z[zi]
      listed[#listed + 1] = false
      from_z[#from_z + 1] = z[zi]
      zi = zi + 2
    else
      ids[#ids + 1] = l[li + 1]
      listed[#listed + 1] = true
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
-- time, id, job, priority, from the submission list}, without taking them.
local function peek(job, prio, n, candidates)
  local z = redis.call('ZRANGE', k_ready(job, prio), 0, n - 1, 'WITHSCORES')
  local l = redis.call('LRANGE', k_submitted(job, prio), 0, 2 * n - 1)
  local p = -tonumber(prio)
  local zi, li, found = 1, 1, 0
  while found < n and (zi <= #z or li <= #l) do
    local zr, lr = tonumber(z[zi + 1]), tonumber(l[li])
    if li > #l or (zi <= #z and before(zr, z[zi], lr, l[li + 1])) then
      candidates[#candidates + 1] = { p, zr, z[zi], job, prio, false }
      zi = zi + 2
    else
      candidates[#candidates + 1] = { p, lr, l[li + 1], job, prio, true }
      li = li + 2
    end
    found = found + 1
  end
  return found
end

-- Candidates compared in claim order.
local function in_claim_order(a, b)
  if a[1] ~= b[1] then return a[1] < b[1] end
  if a[2] ~= b[2] then return a[2] < b[2] end
  return a[3] < b[3]
end

-- 2. Select the best `n` due tasks across the requested jobs (higher priority first, then
-- earlier run_at, then earlier submission: id) and take them out of the queues; appends their
-- ids, jobs and sources to `ids`, `jobs` and `listed` (see take). Returns whether any was found.
local function select(n, ids, jobs, listed)
  if #ARGV == first_job then
    local job = ARGV[first_job]
    local pk = k_prios(job)
    local remaining = n
    for _, prio in ipairs(redis.call('ZRANGE', pk, 0, -1)) do
      local got = take(job, prio, remaining, ids, jobs, listed)
      if got < remaining then
        redis.call('ZREM', pk, prio) -- that priority has nothing due any more
      end
      remaining = remaining - got
      if remaining == 0 then break end
    end
    return remaining < n
  end
  local candidates = {}
  for j = first_job, #ARGV do
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
  table.sort(candidates, in_claim_order)
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
  local taken_ids, taken_jobs, taken_listed = {}, {}, {}
  for _, c in ipairs(order) do
    take(c[4], c[5], counts[c[4] .. '\0' .. c[5]], taken_ids, taken_jobs, taken_listed)
  end
  -- Lease in overall claim order.
  for i = 1, math.min(n, #candidates) do
    ids[#ids + 1] = candidates[i][3]
    jobs[#jobs + 1] = candidates[i][4]
    listed[#listed + 1] = candidates[i][6]
  end
  return #candidates > 0
end

-- Counts a task of a counted job that starts running.
local function count(job, ckey)
  local ck = k_counts(job)
  redis.call('HINCRBY', ck, 'n', 1)
  if ckey then
    redis.call('HINCRBY', ck, 'k' .. ckey, 1)
  end
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

-- Leases the waiting task `id` of `job`, whose fields status, params, attempt, max and token
-- are `h`, under a new token; counts it if its job is counted (`ckey`: its concurrency key,
-- false when not read yet).
local function lease(id, key, h, job, ckey)
  local attempt, token = '1', '1' -- a first claim needs no number formatting
  if h[3] then attempt = fmt((tonumber(h[3]) or 0) + 1) end
  if h[5] then token = fmt((tonumber(h[5]) or 0) + 1) end
  if is_counted(job) then
    redis.call('HSET', key, 'status', 'running', 'attempt', attempt, 'token', token,
      'lo', owner, 'lx', expires, 'started', now, 'cc', '1')
    if ckey == false then ckey = redis.call('HGET', key, 'ckey') end
    count(job, ckey)
  else
    redis.call('HSET', key, 'status', 'running', 'attempt', attempt, 'token', token,
      'lo', owner, 'lx', expires, 'started', now)
  end
  running[#running + 1] = expires
  running[#running + 1] = id
  moved(job, h[1], 'running')
  publish_status(id, 'running')
  out[#out + 1] = id
  out[#out + 1] = token
  out[#out + 1] = job
  out[#out + 1] = h[2]
  out[#out + 1] = attempt
  out[#out + 1] = h[4]
  out[#out + 1] = h[6] or h[7]
  leased = leased + 1
end

-- Claims with concurrency limits: walks the requested jobs' due tasks in claim order, taking
-- each unless its job is at max_running (then the rest of that job stays where it is) or its
-- concurrency key is at max_running_per_key (then the task is parked until a task of that key
-- stops running). Returns whether the budget ran out first.
local function claim_limited()
  local limits = {} -- job -> {max_running or false, max_running_per_key or false}
  local uncounted = {} -- limited jobs whose running tasks are not counted yet
  local any_uncounted = false
  for j = 7, first_job - 1, 3 do
    local job = ARGV[j]
    limits[job] = { tonumber(ARGV[j + 1]) or false, tonumber(ARGV[j + 2]) or false }
    if not is_counted(job) then
      uncounted[job] = { n = 0, keys = {} }
      any_uncounted = true
    end
  end
  -- A job's first limited claim counts its running tasks, once: it reads every running task.
  if any_uncounted then
    for _, id in ipairs(redis.call('ZRANGE', k_running, 0, -1)) do
      local key = k_task(id)
      local h = redis.call('HMGET', key, 'status', 'job', 'ckey', 'cc')
      local c = h[2] and uncounted[h[2]]
      if c and h[1] == 'running' and h[4] ~= '1' then
        c.n = c.n + 1
        if h[3] then c.keys[h[3]] = (c.keys[h[3]] or 0) + 1 end
        redis.call('HSET', key, 'cc', '1')
      end
    end
    for job, c in pairs(uncounted) do
      local ck = k_counts(job)
      redis.call('HSET', ck, 'n', fmt(c.n))
      for k, n in pairs(c.keys) do
        redis.call('HSET', ck, 'k' .. k, fmt(n))
      end
      counted_jobs[job] = true
    end
  end
  local running_of = {} -- job -> tasks running
  local per_key = {} -- job -> key -> tasks running
  for job in pairs(limits) do
    running_of[job] = tonumber(redis.call('HGET', k_counts(job), 'n')) or 0
    per_key[job] = {}
  end
  local function key_count(job, key)
    local n = per_key[job][key]
    if not n then
      n = tonumber(redis.call('HGET', k_counts(job), 'k' .. key)) or 0
      per_key[job][key] = n
    end
    return n
  end

  local capped = {} -- jobs at max_running
  local round = 0
  while leased < limit do
    if examined >= budget then
      return true
    end
    -- The next due tasks of every job not capped, a window per job (growing with each round).
    round = round + 1
    local window = math.min(math.max(limit - leased, 8 * 2 ^ round), budget - examined, 4096)
    window = math.floor(window)
    local candidates = {}
    local last = {} -- job -> its last candidate, if more may follow it
    for j = first_job, #ARGV do
      local job = ARGV[j]
      if not capped[job] then
        local pk = k_prios(job)
        local found = 0
        for _, prio in ipairs(redis.call('ZRANGE', pk, 0, -1)) do
          local got = peek(job, prio, window - found, candidates)
          if got == 0 then
            redis.call('ZREM', pk, prio)
          end
          found = found + got
          if found >= window then
            last[job] = candidates[#candidates]
            break
          end
        end
      end
    end
    if #candidates == 0 then
      return false
    end
    table.sort(candidates, in_claim_order)
    -- Walk them in claim order. Every task passed is taken, parked or dropped (cancelled), so
    -- it leaves its queue; a window's last task ends the round, as tasks of that job beyond
    -- the window may come before the next candidates.
    local passed = {} -- job .. '\0' .. prio -> {from the ready set..., n from the list}
    for _, c in ipairs(candidates) do
      if leased >= limit then break end
      local job, id = c[4], c[3]
      local limit_of = limits[job]
      if capped[job] then
        -- left where it is
      elseif limit_of and limit_of[1] and running_of[job] >= limit_of[1] then
        capped[job] = true
        redis.call('HSET', k_counts(job), 'held', '1')
      else
        examined = examined + 1
        local stream = job .. '\0' .. c[5]
        local p = passed[stream]
        if not p then
          p = { job = job, prio = c[5], z = {}, l = 0 }
          passed[stream] = p
        end
        if c[6] then p.l = p.l + 1 else p.z[#p.z + 1] = id end
        local key = k_task(id)
        local h = redis.call('HMGET', key, 'status', 'params', 'attempt', 'max', 'token', 'run_at',
          'created', 'ckey')
        if h[1] and is_waiting(h[1]) and not (c[6] and h[5]) then
          local ckey = h[8]
          if limit_of and limit_of[2] and ckey and key_count(job, ckey) >= limit_of[2] then
            redis.call('ZADD', k_parked(job, ckey), -tonumber(c[5]), park_member(c[2], id))
          else
            lease(id, key, h, job, ckey or nil)
            if limit_of then
              running_of[job] = running_of[job] + 1
              if ckey then per_key[job][ckey] = key_count(job, ckey) + 1 end
            end
          end
        end
        if last[job] == c then break end
      end
    end
    for _, p in pairs(passed) do
      zrem_many(k_ready(p.job, p.prio), p.z)
      if p.l > 0 then
        redis.call('LTRIM', k_submitted(p.job, p.prio), 2 * p.l, -1)
      end
    end
  end
  return false
end

if first_job > 7 then
  more = claim_limited()
else
  while true do
    local ids, jobs, listed = {}, {}, {}
    local any = select(limit - leased, ids, jobs, listed)
    examined = examined + #ids
    for n, id in ipairs(ids) do
      local key = k_task(id)
      local h = redis.call('HMGET', key, 'status', 'params', 'attempt', 'max', 'token', 'run_at',
        'created')
      if h[1] and is_waiting(h[1]) and not (listed[n] and h[5]) then
        lease(id, key, h, jobs[n], false)
      end
    end
    if leased >= limit or not any then break end
    if examined >= budget then
      more = true
      break
    end
  end
end
if more then
  redis.call('PUBLISH', ch_work, '1')
end
zadd_many(k_running, running)
flush_counts()
return out
