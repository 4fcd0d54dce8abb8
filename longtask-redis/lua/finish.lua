-- finish.lua: records attempts' outcomes, each fenced by its lease token.
-- ARGV: now, then 6 per completion: id, token, kind ("s" succeeded, "f" failed, "c" cancelled),
--   text (output, error or reason), retry_at ("" for a permanent failure), progress ("" or JSON).
-- A failed or cancelled attempt joins the task's attempt history. Returns one integer per
-- completion: 1 applied, 0 stale.
local now = ARGV[1]
local out = {}
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
      record_attempt(id, h, 'cancelled', text, now)
      finalize(id, h, 'cancelled', now, 'em', text, 'ea', h[ATTEMPT] or '0', 'et', now)
    else
      fail_attempt(id, h, 'failed', text, retry_at, now)
    end
    out[#out + 1] = 1
  else
    out[#out + 1] = 0
  end
end
flush()
return out
