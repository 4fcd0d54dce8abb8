-- finish.lua: records attempts' outcomes, each fenced by its lease token.
-- ARGV: now, then 6 per completion: id, token, kind ("s" succeeded, "f" failed, "c" cancelled),
--   text (output, error or reason), retry_at ("" for a permanent failure), progress ("" or JSON).
-- Returns one integer per completion: 1 applied, 0 stale.
local now = ARGV[1]
local out = {}
local retried = false
for i = 2, #ARGV, 6 do
  local id, token, kind, text = ARGV[i], ARGV[i + 1], ARGV[i + 2], ARGV[i + 3]
  local retry_at, progress = ARGV[i + 4], ARGV[i + 5]
  local h = leased(id, token)
  if h then
    if progress ~= '' then
      redis.call('HSET', k_task(id), 'progress', progress)
      publish_task(id, 'p' .. progress)
    end
    if kind == 's' then
      finalize(id, h, 'succeeded', now, 'output', text)
    elseif kind == 'c' then
      complete(id, h)
      finalize(id, h, 'cancelled', now, 'em', text, 'ea', h[3] or '0', 'et', now)
    else
      if fail_attempt(id, h, text, retry_at, now) then retried = true end
    end
    out[#out + 1] = 1
  else
    out[#out + 1] = 0
  end
end
flush()
if retried then
  redis.call('PUBLISH', ch_work, '1')
end
return out
