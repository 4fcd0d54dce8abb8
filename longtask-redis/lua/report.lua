-- report.lua: stores the latest progress of tasks that are not finished, and publishes it.
-- ARGV: 2 per update: id, progress JSON.
for i = 1, #ARGV, 2 do
  local id, progress = ARGV[i], ARGV[i + 1]
  local key = k_task(id)
  local status = redis.call('HGET', key, 'status')
  if status and not is_final(status) then
    redis.call('HSET', key, 'progress', progress)
    publish_task(id, 'p' .. progress)
  end
end
return 0
