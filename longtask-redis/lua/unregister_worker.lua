-- unregister_worker.lua: removes a worker's entry (see register_worker.lua).
-- ARGV: id.
redis.call('HDEL', base .. 'w', ARGV[1])
redis.call('ZREM', base .. 'wx', ARGV[1])
return 0
