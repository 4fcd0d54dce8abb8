-- list.lua: one bounded step of a filtered listing in submission (id) order.
-- ARGV: after ("" for the start), want (matches wanted), budget (ids to scan at most),
--   job ("" or "+" job), owner ("" or "+" owner), statuses (comma-separated, "" for any),
--   group ("" for any, else the root's id: only its members, read from the group's index).
-- Returns {cursor, done ("1"/"0"), id...}: the last id scanned, whether the index is exhausted,
-- and the matching ids.
local after, want, budget = ARGV[1], tonumber(ARGV[2]), tonumber(ARGV[3])
local job, owner, statuses, group = ARGV[4], ARGV[5], ARGV[6], ARGV[7]
local index = k_all
if group ~= '' then index = k_group(group) end
local wanted = nil
if statuses ~= '' then
  wanted = {}
  for s in string.gmatch(statuses, '[^,]+') do wanted[s] = true end
end
local from = '-'
if after ~= '' then from = '(' .. after end
local out = { after, '0' }
local scanned = 0
while true do
  local step = math.min(500, budget - scanned)
  if step <= 0 then break end
  local ids = redis.call('ZRANGEBYLEX', index, from, '+', 'LIMIT', 0, step)
  for _, id in ipairs(ids) do
    scanned = scanned + 1
    out[1] = id
    local h = redis.call('HMGET', k_task(id), 'job', 'status', 'owner')
    if h[2]
      and (job == '' or h[1] == string.sub(job, 2))
      and (wanted == nil or wanted[h[2]])
      and (owner == '' or h[3] == string.sub(owner, 2)) then
      out[#out + 1] = id
      if #out - 2 >= want then
        return out
      end
    elseif not h[2] and group ~= '' then
      -- A member that Redis expired in real time (purge, which takes members off their
      -- group's index, could not read its group any more).
      redis.call('ZREM', index, id)
    end
  end
  if #ids < step then
    out[2] = '1'
    return out
  end
  from = '(' .. out[1]
end
return out
