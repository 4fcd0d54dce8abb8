-- insert.lua: inserts a batch of tasks atomically, honouring idempotency keys.
-- ARGV: now, then per task: id, params, and either "=" (the same job, priority, run_at,
--   max attempts, retention, owner, idempotency key, concurrency key and group as the task
--   before), or "~" and a concurrency key (the rest as the task before), or "!" followed by
--   those 9: job, prio, run_at, max, ret, owner, ikey, ckey, group (owner, ikey and ckey: "" for
--   none, else "+" followed by the value; group: "" for none, "r" for a group's root, "m"
--   followed by the root's id for a member). A batch of one job's tasks thus sends 3 arguments
--   per task (4 when their concurrency keys differ).
-- A root is stored with its count of open members (0); each member created counts itself in
-- its root and joins the group's index. A member joins only a root created earlier in the batch
-- or a root that waits (scheduled, with a count): else the whole batch is refused.
-- Returns {"ok", created, existing...}: `created` has one character per task, "1" created or "0"
-- already present under its idempotency key, and `existing` lists the ids found for the "0"s, in
-- order. Or {"dup", id} when an id is already in use, or {"group", root} when a member names a
-- group it cannot join (then nothing was written), or {"bad"} when the arguments do not follow
-- this layout.
local now = ARGV[1]
local now_n = tonumber(now)
local argc = #ARGV

-- 1. Check the layout, that no id appears twice and that members join open groups, before any
-- write.
local seen = {}
local ids = {}
local i = 2
local first = true
local group = ''
local batch_roots = {} -- roots earlier in the batch
local open_roots = {} -- root id -> whether it waits in Redis (memoized)
while i <= argc do
  local id, spec = ARGV[i], ARGV[i + 2]
  if spec == '!' then
    group = ARGV[i + 11]
    i = i + 12
  elseif spec == '=' and not first then
    i = i + 3
  elseif spec == '~' and not first then
    i = i + 4
  else
    return { 'bad' }
  end
  if i > argc + 1 then
    return { 'bad' }
  end
  first = false
  if seen[id] then
    return { 'dup', id }
  end
  seen[id] = true
  ids[#ids + 1] = id
  if group == 'r' then
    batch_roots[id] = true
  elseif group ~= '' then
    local root = string.sub(group, 2)
    if not batch_roots[root] then
      local open = open_roots[root]
      if open == nil then
        local r = redis.call('HMGET', k_task(root), 'open', 'status')
        open = r[1] ~= false and r[2] == 'scheduled'
        open_roots[root] = open
      end
      if not open then
        return { 'group', root }
      end
    end
  end
end

-- 2. Add every id to the listing index, CHUNK at a time. ZADD NX adds only ids not there yet,
-- so it also finds ids in use without a lookup per task: only when it added fewer than asked
-- are the tasks looked up. An id in use fails the whole batch, and the index entries added so
-- far are taken back (a script that fails halfway keeps its writes), except those of tasks that
-- exist. (An id still listed whose task Redis expired in real time may be used again.)
for c = 1, #ids, CHUNK do
  local last = math.min(c + CHUNK - 1, #ids)
  local members = {}
  for k = c, last do
    members[#members + 1] = '0' -- a string: a Lua number would be formatted for every task
    members[#members + 1] = ids[k]
  end
  local added = redis.call('ZADD', k_all, 'NX', unpack(members))
  if added < last - c + 1 then
    for k = c, last do
      if redis.call('EXISTS', k_task(ids[k])) == 1 then
        local undo = {}
        for m = 1, last do
          if m ~= k and redis.call('EXISTS', k_task(ids[m])) == 0 then
            undo[#undo + 1] = ids[m]
          end
        end
        zrem_many(k_all, undo)
        return { 'dup', ids[k] }
      end
    end
  end
end

local created = {} -- one '1' / '0' per task
local out = { 'ok', '' }
local not_created = {} -- ids listed in step 2 whose task was not created
local ready = {} -- ready key -> flat {run_at, id, ...}
local submitted = {} -- submission list key -> flat {run_at, id, ...}
local tails = {} -- submission list key -> {run time, id} of its last entry
local prios = {} -- priorities key -> flat {-prio, prio, ...}, one entry per priority
local prio_seen = {} -- priorities key -> set of priorities already in `prios`
-- The batch's list for `key` in `lists` (created empty).
local function list_for(lists, key)
  local list = lists[key]
  if not list then
    list = {}
    lists[key] = list
  end
  return list
end
-- Notes that `job` has due tasks of priority `prio` (once per batch).
local function register_prio(job, prio)
  local pk = k_prios(job)
  local seen_here = prio_seen[pk]
  if not seen_here then
    seen_here = {}
    prio_seen[pk] = seen_here
    prios[pk] = {}
  end
  if not seen_here[prio] then
    seen_here[prio] = true
    local plist = prios[pk]
    plist[#plist + 1] = -tonumber(prio)
    plist[#plist + 1] = prio
  end
end
local delayed = {}
local joined = {} -- root id -> flat {0, member id, ...} of the members created
local created_roots = {} -- roots this batch created, whose count is written with them
local keys = {} -- idempotency key -> id, for repeats inside this batch
local due = false
-- The current spec (the 8 shared fields), and what follows from it: the task's status, and the
-- HSET arguments of its tasks with the params value left for last. Every field costs (a small
-- hash is a list Redis scans): only fields with a value are written (absent = none / zero):
-- priority 0 is left out, and so is a run time equal to the creation time.
local job, prio, run_at, ikey, ckey, status, root
local fields
-- For a queued spec: its run time as a number, whether its tasks may join the submission list,
-- the lists the batch adds to its ready set and submission list, and that list's last entry.
local run_n, listable, ready_list, sub_list, tail
local t = 0
i = 2
while i <= argc do
  local id, params = ARGV[i], ARGV[i + 1]
  if ARGV[i + 2] == '!' then
    local max, ret, owner
    job, prio, run_at, max = ARGV[i + 3], ARGV[i + 4], ARGV[i + 5], ARGV[i + 6]
    ret, owner, ikey, ckey, group = ARGV[i + 7], ARGV[i + 8], ARGV[i + 9], ARGV[i + 10], ARGV[i + 11]
    i = i + 12
    status = 'queued'
    if run_at ~= now and tonumber(run_at) > now_n then status = 'scheduled' end
    fields = { 'status', status, 'job', job, 'max', max, 'ret', ret, 'created', now }
    if prio ~= '0' then
      fields[#fields + 1] = 'prio'
      fields[#fields + 1] = prio
    end
    if run_at ~= now then
      fields[#fields + 1] = 'run_at'
      fields[#fields + 1] = run_at
    end
    if owner ~= '' then
      fields[#fields + 1] = 'owner'
      fields[#fields + 1] = string.sub(owner, 2)
    end
    if ikey ~= '' then
      fields[#fields + 1] = 'ikey'
      fields[#fields + 1] = ikey
    end
    root = nil
    if group == 'r' then
      fields[#fields + 1] = 'open'
      fields[#fields + 1] = '0'
    elseif group ~= '' then
      root = string.sub(group, 2)
      fields[#fields + 1] = 'grp'
      fields[#fields + 1] = root
    end
    fields[#fields + 1] = 'params'
    fields[#fields + 1] = ''
    if status == 'queued' then
      register_prio(job, prio)
      run_n = tonumber(run_at)
      listable = run_at == now
      ready_list = list_for(ready, k_ready(job, prio))
      if listable then
        local lk = k_submitted(job, prio)
        sub_list = list_for(submitted, lk)
        tail = tails[lk]
        if tail == nil then
          local last = redis.call('LRANGE', lk, -2, -1)
          tail = { last[1] and tonumber(last[1]) or -math.huge, last[2] or '' }
          tails[lk] = tail
        end
      end
    end
  elseif ARGV[i + 2] == '~' then
    ckey = ARGV[i + 3]
    i = i + 4
  else
    i = i + 3
  end
  t = t + 1
  local existing = nil
  local ik = nil
  if ikey ~= '' then
    ik = k_idem(job, string.sub(ikey, 2))
    existing = keys[ik]
    if not existing then
      local found = redis.call('GET', ik)
      if found and redis.call('EXISTS', k_task(found)) == 1 then
        existing = found
      end
    end
  end
  if existing then
    created[t] = '0'
    out[#out + 1] = existing
    not_created[#not_created + 1] = id
  else
    fields[#fields] = params
    if ckey ~= '' then
      local n = #fields
      fields[n + 1], fields[n + 2] = 'ckey', string.sub(ckey, 2)
      redis.call('HSET', k_task(id), unpack(fields))
      fields[n + 1], fields[n + 2] = nil, nil
    else
      redis.call('HSET', k_task(id), unpack(fields))
    end
    moved(job, nil, status)
    if ik then
      redis.call('SET', ik, id)
      keys[ik] = id
    end
    if group == 'r' then
      created_roots[id] = true
    elseif root then
      local members = list_for(joined, root)
      members[#members + 1] = '0'
      members[#members + 1] = id
    end
    if status == 'queued' then
      due = true
      -- Due at submission: appended to the submission list when that keeps it in claim order
      -- (after its last entry, which another client with a clock behind may prevent), else
      -- into the ready set.
      if listable and (run_n > tail[1] or (run_n == tail[1] and id > tail[2])) then
        tail[1], tail[2] = run_n, id
        sub_list[#sub_list + 1] = run_at
        sub_list[#sub_list + 1] = id
      else
        ready_list[#ready_list + 1] = run_at
        ready_list[#ready_list + 1] = id
      end
    else
      delayed[#delayed + 1] = run_at
      delayed[#delayed + 1] = id
    end
    created[t] = '1'
  end
end
zrem_many(k_all, not_created)
zadd_many(k_delayed, delayed)
for rk, list in pairs(ready) do
  zadd_many(rk, list)
end
for lk, list in pairs(submitted) do
  call_many('RPUSH', lk, list)
end
for pk, plist in pairs(prios) do
  zadd_many(pk, plist)
end
-- Members count themselves in their roots: a root this batch created, or one that waits (a
-- root of the batch not created because its idempotency key was taken is not counted in).
for r, members in pairs(joined) do
  if created_roots[r] or open_roots[r] then
    redis.call('HINCRBY', k_task(r), 'open', fmt(#members / 2))
  end
  zadd_many(k_group(r), members)
end
flush_counts()
if due then
  redis.call('PUBLISH', ch_work, '1')
end
out[2] = table.concat(created)
return out
