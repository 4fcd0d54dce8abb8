-- common.lua: helpers shared by every longtask script. The Rust side prepends this file to each
-- script, so every script body below can use these locals.
--
-- KEYS[1] is the namespace base "{prefix}:" (the hash tag routes every key of a namespace to one
-- Redis Cluster slot). Every key a script touches is built from it.
--
-- Times are integer milliseconds since the epoch, computed by the caller from its injected clock
-- and passed as arguments: no script reads the server's clock. They are kept as strings where
-- they are only stored, and formatted with %d where computed, so they never turn into "1e+15".
--
-- Task hash fields ("" or absent = none, or zero):
--   status job prio (absent = 0) run_at (absent = created) max ret created params owner
--   ikey ("+key") ckey (the concurrency key, absent = none) attempt cancel
--   token (the last lease's number, absent until the first claim; an operator's retry of a
--   task never claimed sets it to 0, so a claim knows its submission list entry is stale)
--   cc ("1" while the task runs and is counted in its job's running counts, see below)
--   lo (lease owner, "+name") lx (lease expiry): meaningful only while the status is running,
--   left behind afterwards; started finished output progress (JSON)
--   em ea et (last error: message, attempt, time)
--   ah (attempt history: a JSON array of the attempts that ended without success, oldest
--   first, the last MAX_ATTEMPT_HISTORY; each {attempt (a number), started_at, ended_at (times
--   as strings), worker (absent = none), outcome ("failed", "lost" or "cancelled"), error};
--   absent until an attempt fails; written by record_attempt, never on a success)
--   checkpoint (the last checkpoint's state, JSON: only load_checkpoint reads it, never a
--   record read) checkpoint_info (what the record shows of it, JSON)
--   grp (a group member: its root's id; the member is also in the group's index, see k_group)
--   open (a group root: how many of its members have not reached a final status; present on
--   roots only, from their insert; the root waits scheduled at year 9999 until it is fired)
--   xs (how many of the task's entries in its finished list are stale: an operator's retry
--   of a finished task leaves its entry there, and purge passes over that many of its entries)

local base = KEYS[1]
local MAX_MS = 8210266876799999 -- chrono's DateTime::<Utc>::MAX_UTC in milliseconds
local MAX_TTL_MS = 3153600000000 -- real-time expiry is capped at 100 years
local EXPIRY_GRACE_MS = 60000 -- real-time expiry trails the clock-based purge by a minute
local CHUNK = 500 -- members per variadic command (Lua's stack is small)

-- A user string (job name, idempotency key) as one key component: ':', '{', '}' and '%' are
-- percent-encoded, so no name can split a key or change its hash tag.
local function esc(s)
  return (string.gsub(s, '[%%:{}]', function(c)
    return string.format('%%%02X', string.byte(c))
  end))
end

-- Escaped job names and ready keys are memoized for the length of a script: a batch usually
-- names few jobs, and escaping costs a pattern match per call.
local escaped_jobs = {}
local function esc_job(job)
  local e = escaped_jobs[job]
  if not e then
    e = esc(job)
    escaped_jobs[job] = e
  end
  return e
end

local function k_task(id) return base .. 't:' .. id end
-- A job's due waiting tasks of one priority are in two places, both in claim order (run time,
-- then id): the ready set, a sorted set scored by run time (tasks that became due later:
-- promoted, retried, released, or submitted with a past run time), and the submission list,
-- a list of run time, id pairs (tasks due when submitted, appended in order: appending to a
-- list costs Redis a fraction of a sorted-set insert, and most tasks go this way). Claims merge
-- the two. A task cancelled while in a submission list stays there until a claim pops and
-- skips it. The job's priorities that may have due tasks are a sorted set scored by -priority.
local queue_keys = {}
local function queue_key(kind, job, prio)
  local by_job = queue_keys[kind]
  if not by_job then
    by_job = {}
    queue_keys[kind] = by_job
  end
  local by_prio = by_job[job]
  if not by_prio then
    by_prio = {}
    by_job[job] = by_prio
  end
  local key = by_prio[prio]
  if not key then
    key = base .. kind .. esc_job(job) .. ':' .. prio
    by_prio[prio] = key
  end
  return key
end
local function k_ready(job, prio) return queue_key('q:', job, prio) end
local function k_submitted(job, prio) return queue_key('l:', job, prio) end
local function k_prios(job) return base .. 'qp:' .. esc_job(job) end
local function k_idem(job, key) return base .. 'i:' .. esc_job(job) .. ':' .. esc(key) end
local function ch_task(id) return base .. 'ev:' .. id end
-- Concurrency limits. A job becomes counted when a claim first enforces a limit on it: from then
-- on its running counts are kept in a hash, {n = running tasks, k<key> = running tasks with
-- that concurrency key (absent = 0), held = "1" when a claim passed over waiting tasks because
-- the job was at max_running}. Every claim of a counted job (limited or not) counts the tasks
-- it leases and marks them (cc = 1); every end of a counted attempt takes them off again.
-- A task that a claim passed over because its key was at max_running_per_key is parked: taken
-- out of its ready queue into the parked set of its job and key (score -priority, member its
-- run key and id, so the set is in claim order), and moved back to its ready set, in its old
-- place, when a task of that key stops running (or a waiting one is cancelled).
local function k_counts(job) return base .. 'rn:' .. esc_job(job) end
local function k_parked(job, key) return base .. 'pk:' .. esc_job(job) .. ':' .. esc(key) end
-- A group's members (score 0, so in id order), for listings by group: written by insert, each
-- member taken off by purge and delete (the set goes when its last member does).
local function k_group(root) return base .. 'g:' .. root end
-- The job of a root without a completion job (longtask-core's GROUP_JOB): it succeeds when its
-- last member ends.
local GROUP_JOB = 'longtask.group'
local k_delayed = base .. 'delayed'
local k_running = base .. 'running'
local k_all = base .. 'all'
-- Finished tasks waiting for their purge, one list per retention period (in milliseconds) in
-- the order they finished, so a list's head is always the next of its tasks to expire; and the
-- set of retention periods that have such a list, scored by the period. Appending to a list
-- costs far less than indexing every finished task in one sorted set.
local function k_finished(ret) return base .. 'x:' .. ret end
local k_retentions = base .. 'xr'
local ch_work = base .. 'work'

local function fmt(n) return string.format('%d', n) end

-- Whether a task became due during this script: flush() then wakes idle workers, once.
local became_due = false

-- Adds members to a sorted set in chunks; `pairs_list` is a flat {score, member, ...} list.
local function zadd_many(key, pairs_list)
  local n = #pairs_list
  local i = 1
  while i <= n do
    local j = math.min(i + 2 * CHUNK - 1, n)
    redis.call('ZADD', key, unpack(pairs_list, i, j))
    i = j + 1
  end
end

-- Runs a variadic command (ZREM, RPUSH) on `key` with `members`, CHUNK at a time.
local function call_many(command, key, members)
  local n = #members
  local i = 1
  while i <= n do
    local j = math.min(i + CHUNK - 1, n)
    redis.call(command, key, unpack(members, i, j))
    i = j + 1
  end
end

-- Removes members from a sorted set in chunks.
local function zrem_many(key, members)
  call_many('ZREM', key, members)
end

local function is_waiting(status)
  return status == 'queued' or status == 'scheduled' or status == 'retrying'
end

local function is_final(status)
  return status == 'succeeded' or status == 'failed' or status == 'cancelled'
end

-- Task events are published only while someone may be watching: subscribers keep the key
-- {prefix}:watching alive (it expires within seconds once they stop), and a watcher subscribes
-- before it reads the task's status, so it never misses a change. Checked once per script.
local watched = nil
local function publish_task(id, message)
  if watched == nil then
    watched = redis.call('EXISTS', base .. 'watching') == 1
  end
  if watched then
    redis.call('PUBLISH', ch_task(id), message)
  end
end

local function publish_status(id, status)
  publish_task(id, 's' .. status)
end

-- Stats. Every task is counted in its job's status counts (hash sc:<job>, status -> n, a count
-- at zero removed) from its insert until it is purged or deleted, moved from count to count by
-- every status change; the jobs that have tasks are in the set `jobs`. Tasks that finish are also counted in their
-- minute (hash tp, field "<minute>|<status>|<job>" -> n, each field scored by its minute in the
-- sorted set tpm, so that reads and purge find a range of minutes). A script collects its
-- changes here and flush_counts() applies them, one HINCRBY per job and status changed.
local k_jobs = base .. 'jobs'
local function k_status_counts(job) return base .. 'sc:' .. esc_job(job) end
local k_throughput = base .. 'tp'
local k_throughput_minutes = base .. 'tpm'
local status_deltas = {} -- job -> status -> change
local finished_deltas = {} -- job -> status -> tasks finished in the minute of finished_minute
local finished_minute = nil

-- Counts a task of `job` that went from status `from` to status `to` (nil: none, a new or a
-- removed task).
local function moved(job, from, to)
  local by_status = status_deltas[job]
  if not by_status then
    by_status = {}
    status_deltas[job] = by_status
  end
  if from then by_status[from] = (by_status[from] or 0) - 1 end
  if to then by_status[to] = (by_status[to] or 0) + 1 end
end

-- Counts a task of `job` that finished with `status` at `now` in its minute.
local function finished_at(job, status, now)
  if not finished_minute then
    finished_minute = fmt(math.floor(tonumber(now) / 60000) * 60000)
  end
  local by_status = finished_deltas[job]
  if not by_status then
    by_status = {}
    finished_deltas[job] = by_status
  end
  by_status[status] = (by_status[status] or 0) + 1
end

local function flush_counts()
  for job, by_status in pairs(status_deltas) do
    local key = k_status_counts(job)
    local added, emptied = false, false
    for status, delta in pairs(by_status) do
      if delta ~= 0 then
        if redis.call('HINCRBY', key, status, delta) == 0 then
          redis.call('HDEL', key, status)
          emptied = true
        end
        added = added or delta > 0
      end
    end
    if added then
      redis.call('SADD', k_jobs, job)
    elseif emptied and redis.call('EXISTS', key) == 0 then
      -- A job without tasks left is no longer listed.
      redis.call('SREM', k_jobs, job)
    end
  end
  status_deltas = {}
  for job, by_status in pairs(finished_deltas) do
    for status, n in pairs(by_status) do
      local field = finished_minute .. '|' .. status .. '|' .. job
      redis.call('HINCRBY', k_throughput, field, n)
      redis.call('ZADD', k_throughput_minutes, 'NX', finished_minute, field)
    end
  end
  finished_deltas = {}
end

-- A finished task's entry in its retention period's list: its id, then the first letter of its
-- status and its job, so that purge can discount a task that Redis already expired in real time.
local function finished_entry(id, status, job)
  return id .. string.sub(status, 1, 1) .. job
end

-- The id, status and job of a finished list entry (status and job nil for an entry written
-- before entries carried them).
local FINAL_CODES = { s = 'succeeded', f = 'failed', c = 'cancelled' }
local function parse_finished_entry(entry)
  if #entry <= 36 then return entry, nil, nil end
  return string.sub(entry, 1, 36), FINAL_CODES[string.sub(entry, 37, 37)], string.sub(entry, 38)
end

-- Puts a waiting task where claims find it: its job's ready set if due, the delayed set
-- otherwise.
local function enqueue(id, job, prio, run_at, now)
  prio = prio or '0'
  if tonumber(run_at) <= tonumber(now) then
    redis.call('ZADD', k_ready(job, prio), run_at, id)
    redis.call('ZADD', k_prios(job), -tonumber(prio), prio)
    became_due = true
  else
    redis.call('ZADD', k_delayed, run_at, id)
  end
end

-- Moves up to `max` delayed tasks that are due at `now` into their ready sets, earliest first
-- (a scheduled task becomes queued; a retrying one stays retrying). Returns how many it moved.
local function promote_due(now, max)
  local due = redis.call('ZRANGEBYSCORE', k_delayed, '-inf', now, 'LIMIT', 0, max)
  if #due == 0 then
    return 0
  end
  for _, id in ipairs(due) do
    local key = k_task(id)
    local h = redis.call('HMGET', key, 'status', 'job', 'prio', 'run_at')
    if h[1] and is_waiting(h[1]) then
      if h[1] == 'scheduled' then
        redis.call('HSET', key, 'status', 'queued')
        moved(h[2], 'scheduled', 'queued')
      end
      local prio = h[3] or '0'
      redis.call('ZADD', k_ready(h[2], prio), h[4] or now, id)
      redis.call('ZADD', k_prios(h[2]), -tonumber(prio), prio)
    end
  end
  zrem_many(k_delayed, due)
  return #due
end

-- Whether `job`'s running tasks are counted, memoized per script.
local counted_jobs = {}
local function is_counted(job)
  local counted = counted_jobs[job]
  if counted == nil then
    counted = redis.call('EXISTS', k_counts(job)) == 1
    counted_jobs[job] = counted
  end
  return counted
end

-- A parked task's member: its run time as 17 characters that sort like the number (times
-- before 1970 first), then its id, so members of one priority sort in claim order.
local function park_member(run_at, id)
  local n = tonumber(run_at)
  if n >= 0 then
    return string.format('p%016d', n) .. id
  end
  return string.format('n%016d', 1e16 + n) .. id
end

-- Moves the first parked task of `job` and `key` that still waits back to its ready set, where
-- it was before (parked entries of tasks cancelled since are dropped on the way, at most 100).
local function unpark(job, key)
  local pk = k_parked(job, key)
  for _ = 1, 100 do
    local first = redis.call('ZRANGE', pk, 0, 0, 'WITHSCORES')
    local member = first[1]
    if not member then
      return
    end
    redis.call('ZREM', pk, member)
    local id = string.sub(member, 18)
    local status = redis.call('HGET', k_task(id), 'status')
    if status and is_waiting(status) then
      local run_at = tonumber(string.sub(member, 2, 17))
      if string.sub(member, 1, 1) == 'n' then run_at = run_at - 1e16 end
      local prio = fmt(-tonumber(first[2]))
      redis.call('ZADD', k_ready(job, prio), fmt(run_at), id)
      redis.call('ZADD', k_prios(job), -tonumber(prio), prio)
      became_due = true
      return
    end
  end
end

-- Takes a counted task that stops running off its job's running counts; a task of a key lets
-- the next parked task of that key back, and a job that held tasks back wakes idle workers.
local function uncount(id)
  local key = k_task(id)
  local r = redis.call('HMGET', key, 'job', 'ckey')
  redis.call('HDEL', key, 'cc')
  local ck = k_counts(r[1])
  redis.call('HINCRBY', ck, 'n', -1)
  if redis.call('HDEL', ck, 'held') == 1 then
    became_due = true
  end
  if r[2] then
    local field = 'k' .. r[2]
    if redis.call('HINCRBY', ck, field, -1) <= 0 then
      redis.call('HDEL', ck, field)
    end
    unpark(r[1], r[2])
  end
end

-- Takes a waiting task out of the ready and delayed sets.
local function dequeue(id, job, prio)
  prio = prio or '0'
  redis.call('ZREM', k_ready(job, prio), id)
  redis.call('ZREM', k_delayed, id)
end

-- The fields every lease-fenced script reads, in this order, and where each stands. The first
-- six are all a success needs: leased() reads only those, complete() the rest when a path needs
-- them (every field read costs Redis CPU on the hot path).
local LEASED_FIELDS = {
  'status', 'token', 'ret', 'ikey', 'cc', 'grp', 'job', 'attempt', 'max', 'cancel', 'prio',
}
local STATUS, TOKEN, RET, IKEY, CC, GRP, JOB = 1, 2, 3, 4, 5, 6, 7
local ATTEMPT, MAX, CANCEL, PRIO = 8, 9, 10, 11

-- The task's LEASED_FIELDS (the first seven) if `token` is the live lease on it, else nil.
local function leased(id, token)
  local h = redis.call('HMGET', k_task(id), 'status', 'token', 'ret', 'ikey', 'cc', 'grp', 'job')
  if h[STATUS] ~= 'running' or h[TOKEN] ~= token then
    return nil
  end
  h.partial = true
  return h
end

-- Reads the LEASED_FIELDS that leased() left out.
local function complete(id, h)
  if h.partial then
    local r = redis.call('HMGET', k_task(id), 'attempt', 'max', 'cancel', 'prio')
    h[ATTEMPT], h[MAX], h[CANCEL], h[PRIO] = r[1], r[2], r[3], r[4]
    h.partial = nil
  end
  return h
end

-- Index changes collected during a script and applied in a few variadic calls by flush(), which
-- also wakes idle workers if a task became due: every script that finalizes, retries or
-- releases tasks calls flush() before it returns.
local left_running = {} -- ids to remove from the running set
local newly_finished = {} -- retention period -> ids, in the order they finished

-- Notes that a task (whose LEASED_FIELDS are `h`) stops running: its attempt ended.
local function stop_running(id, h)
  left_running[#left_running + 1] = id
  if h[CC] == '1' then
    uncount(id)
  end
end

local function flush()
  flush_counts()
  zrem_many(k_running, left_running)
  for ret, ids in pairs(newly_finished) do
    call_many('RPUSH', k_finished(ret), ids)
    redis.call('ZADD', k_retentions, ret, ret)
  end
  if became_due then
    redis.call('PUBLISH', ch_work, '1')
  end
end

-- The real-time TTL (formatted) of a task with retention `ret` finishing at `now`, memoized per
-- retention: a batch usually shares one.
local ttl_memo = {}
local function retention_ttl(ret, now)
  local ttl = ttl_memo[ret]
  if not ttl then
    local expires = math.min(tonumber(now) + (tonumber(ret) or 0), MAX_MS)
    ttl = fmt(math.min(math.max(expires - tonumber(now), 0) + EXPIRY_GRACE_MS, MAX_TTL_MS))
    ttl_memo[ret] = ttl
  end
  return ttl
end

local leave_group -- defined below finalize, which it calls (and which calls it)

-- Moves a task (whose LEASED_FIELDS are `h`) to a final status, setting the extra field pairs
-- f1 v1 f2 v2 (or none): lists it for the clock-based purge and sets the real-time expiry of
-- its keys; a group member is discounted in its root, in the same script. The lease fields
-- lo / lx are left as they were: they mean nothing unless the status is running (the reader
-- ignores them otherwise), and not clearing them saves a write per task.
local function finalize(id, h, status, now, f1, v1, f2, v2, f3, v3)
  local key = k_task(id)
  if f3 then
    redis.call('HSET', key, 'status', status, 'finished', now, f1, v1, f2, v2, f3, v3)
  elseif f1 then
    redis.call('HSET', key, 'status', status, 'finished', now, f1, v1)
  else
    redis.call('HSET', key, 'status', status, 'finished', now)
  end
  stop_running(id, h)
  moved(h[JOB], h[STATUS], status)
  finished_at(h[JOB], status, now)
  local ret = h[RET] or '0'
  if ret == '' then ret = '0' end
  local ttl = retention_ttl(ret, now)
  local finished = newly_finished[ret]
  if not finished then
    finished = {}
    newly_finished[ret] = finished
  end
  finished[#finished + 1] = finished_entry(id, status, h[JOB])
  redis.call('PEXPIRE', key, ttl)
  if h[IKEY] and h[IKEY] ~= '' then
    complete(id, h)
    redis.call('PEXPIRE', k_idem(h[JOB], string.sub(h[IKEY], 2)), ttl)
  end
  publish_status(id, status)
  if h[GRP] then
    leave_group(h[GRP], now)
  end
end

-- The fields of a group's root that leave_group reads: LEASED_FIELDS, then its count.
local ROOT_FIELDS = {
  'status', 'token', 'ret', 'ikey', 'cc', 'grp', 'job', 'attempt', 'max', 'cancel', 'prio', 'open',
}
local OPEN = 12

-- Discounts a member of the group `root` that reached a final status. When it was the last
-- open member and the root still waits (scheduled), fires the root: a root of GROUP_JOB
-- succeeds now (output null); any other root (the group's completion job) becomes queued, due
-- now, where claims find it. A root that is gone or was cancelled is left alone (a cancelled
-- root keeps counting, but never fires).
leave_group = function(root, now)
  local key = k_task(root)
  local r = redis.call('HMGET', key, unpack(ROOT_FIELDS))
  if not r[OPEN] then
    return
  end
  local open = math.max((tonumber(r[OPEN]) or 0) - 1, 0)
  redis.call('HSET', key, 'open', fmt(open))
  if open > 0 or r[STATUS] ~= 'scheduled' then
    return
  end
  dequeue(root, r[JOB], r[PRIO])
  if r[JOB] == GROUP_JOB then
    finalize(root, r, 'succeeded', now, 'output', 'null')
  else
    redis.call('HSET', key, 'status', 'queued', 'run_at', now)
    moved(r[JOB], 'scheduled', 'queued')
    enqueue(root, r[JOB], r[PRIO], now, now)
    publish_status(root, 'queued')
  end
end

-- How many ended attempts a task keeps (longtask-core's MAX_ATTEMPT_HISTORY).
local MAX_ATTEMPT_HISTORY = 20

-- Appends the running attempt of task `id` (whose LEASED_FIELDS are `h`, completed) to its
-- attempt history `ah`, as ended at `now` with `outcome` and `message`, keeping the last
-- MAX_ATTEMPT_HISTORY. Called before the attempt's end is written, while lo and started are
-- still the attempt's. Times stay strings, so that cjson never rounds them.
local function record_attempt(id, h, outcome, message, now)
  local key = k_task(id)
  local r = redis.call('HMGET', key, 'ah', 'started', 'lo')
  local history = {}
  if r[1] and r[1] ~= '' then
    history = cjson.decode(r[1])
  end
  local worker = nil
  if r[3] and r[3] ~= '' then
    worker = string.sub(r[3], 2)
  end
  history[#history + 1] = {
    attempt = tonumber(h[ATTEMPT]) or 0,
    started_at = r[2] or now,
    ended_at = now,
    worker = worker,
    outcome = outcome,
    error = message,
  }
  while #history > MAX_ATTEMPT_HISTORY do
    table.remove(history, 1)
  end
  redis.call('HSET', key, 'ah', cjson.encode(history))
end

-- Ends an attempt without success (`outcome`: "failed" or "lost", kept in its history):
-- records the error, then retries at `retry_at` (if given, attempts remain and no cancellation
-- was requested), or fails, or cancels when cancellation was requested. Returns whether the
-- task was retried.
local function fail_attempt(id, h, outcome, message, retry_at, now)
  complete(id, h)
  record_attempt(id, h, outcome, message, now)
  local attempt = h[ATTEMPT] or '0'
  local cancel = h[CANCEL] == '1'
  if retry_at ~= '' and (tonumber(attempt) < tonumber(h[MAX])) and not cancel then
    redis.call('HSET', k_task(id), 'status', 'retrying', 'run_at', retry_at,
      'em', message, 'ea', attempt, 'et', now)
    stop_running(id, h)
    moved(h[JOB], h[STATUS], 'retrying')
    enqueue(id, h[JOB], h[PRIO], retry_at, now)
    publish_status(id, 'retrying')
    return true
  end
  local status = 'failed'
  if cancel then status = 'cancelled' end
  finalize(id, h, status, now, 'em', message, 'ea', attempt, 'et', now)
  return false
end
