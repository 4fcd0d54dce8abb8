-- insert.lua: inserts a batch of tasks atomically, honouring idempotency keys.
-- ARGV: now, then 9 per task: id, job, params, prio, run_at, max, ret, owner, ikey
--   (owner and ikey: "" for none, else "+" followed by the value).
-- Returns {"ok", created, existing...}: `created` has one character per task, "1" created or "0"
-- already present under its idempotency key, and `existing` lists the ids found for the "0"s, in
-- order. Or {"dup", id} when an id is already in use (then nothing was written).
local now = ARGV[1]
local now_n = tonumber(now)
local FIELDS = 9
local n = (#ARGV - 1) / FIELDS

-- Check everything before the first write: a script that fails halfway keeps its writes.
-- Existing ids are looked up CHUNK at a time with one variadic EXISTS.
local seen = {}
local pending = {}
local function duplicate_in(task_keys)
  if #task_keys == 0 or redis.call('EXISTS', unpack(task_keys)) == 0 then
    return nil
  end
  for _, key in ipairs(task_keys) do
    if redis.call('EXISTS', key) == 1 then
      return string.sub(key, #base + 3)
    end
  end
  return nil
end
for t = 0, n - 1 do
  local id = ARGV[2 + t * FIELDS]
  if seen[id] then
    return { 'dup', id }
  end
  seen[id] = true
  pending[#pending + 1] = k_task(id)
  if #pending == CHUNK or t == n - 1 then
    local dup = duplicate_in(pending)
    if dup then
      return { 'dup', dup }
    end
    pending = {}
  end
end

local created = {} -- one '1' / '0' per task
local out = { 'ok', '' }
local all = {}
local ready = {} -- ready key -> flat {run_at, id, ...}
local prios = {} -- priorities key -> flat {-prio, prio, ...}, one entry per priority
local delayed = {}
local keys = {} -- idempotency key -> id, for repeats inside this batch
local due = false
for t = 0, n - 1 do
  local i = 2 + t * FIELDS
  local id, job, params, prio, run_at = ARGV[i], ARGV[i + 1], ARGV[i + 2], ARGV[i + 3], ARGV[i + 4]
  local max, ret, owner, ikey = ARGV[i + 5], ARGV[i + 6], ARGV[i + 7], ARGV[i + 8]
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
    created[t + 1] = '0'
    out[#out + 1] = existing
  else
    local key = k_task(id)
    local status = 'queued'
    if run_at ~= now and tonumber(run_at) > now_n then status = 'scheduled' end
    -- Every field costs (a small hash is a list Redis scans): only fields with a value are
    -- written (absent = none / zero), priority 0 is left out, and so is a run time equal to the
    -- creation time.
    if run_at == now then
      if prio == '0' then
        redis.call('HSET', key, 'status', status, 'job', job, 'max', max, 'ret', ret,
          'created', now, 'params', params)
      else
        redis.call('HSET', key, 'status', status, 'job', job, 'prio', prio, 'max', max,
          'ret', ret, 'created', now, 'params', params)
      end
    elseif prio == '0' then
      redis.call('HSET', key, 'status', status, 'job', job, 'run_at', run_at, 'max', max,
        'ret', ret, 'created', now, 'params', params)
    else
      redis.call('HSET', key, 'status', status, 'job', job, 'prio', prio, 'run_at', run_at,
        'max', max, 'ret', ret, 'created', now, 'params', params)
    end
    if owner ~= '' then redis.call('HSET', key, 'owner', string.sub(owner, 2)) end
    if ik then
      redis.call('HSET', key, 'ikey', ikey)
      redis.call('SET', ik, id)
      keys[ik] = id
    end
    all[#all + 1] = '0' -- a string: a Lua number would be formatted for every task
    all[#all + 1] = id
    if status == 'queued' then
      local rk = k_ready(job, prio)
      local list = ready[rk]
      if not list then
        list = {}
        ready[rk] = list
        local pk = k_prios(job)
        local plist = prios[pk]
        if not plist then
          plist = {}
          prios[pk] = plist
        end
        plist[#plist + 1] = -tonumber(prio)
        plist[#plist + 1] = prio
      end
      list[#list + 1] = run_at
      list[#list + 1] = id
      due = true
    else
      delayed[#delayed + 1] = run_at
      delayed[#delayed + 1] = id
    end
    created[t + 1] = '1'
  end
end
zadd_many(k_all, all)
zadd_many(k_delayed, delayed)
for rk, list in pairs(ready) do
  zadd_many(rk, list)
end
for pk, plist in pairs(prios) do
  zadd_many(pk, plist)
end
if due then
  redis.call('PUBLISH', ch_work, '1')
end
out[2] = table.concat(created)
return out
