-- report.lua: stores the latest progress of running tasks under their live lease (a stale lease
-- changes nothing), and publishes it.
-- ARGV: 3 per update: id, token, progress JSON.
for i = 1, #ARGV, 3 do
  local id, token, progress = ARGV[i], ARGV[i + 1], ARGV[i + 2]
  local key = k_task(id)
  local h = redis.call('HMGET', key, 'status', 'token')
  if h[1] == 'running' and h[2] == token then
    redis.call('HSET', key, 'progress', progress)
    publish_task(id, 'p' .. progress)
  end
end
return 0
