-- register_worker.lua: registers a worker, or refreshes its entry.
-- ARGV: id, info (WorkerInfo JSON, its last_seen the caller's now), until (ms: the entry ends
--   then unless refreshed again).
-- The registry: {p}:w, a hash of worker id -> info, and {p}:wx, the ids by the time their
-- entries end.
redis.call('HSET', base .. 'w', ARGV[1], ARGV[2])
redis.call('ZADD', base .. 'wx', ARGV[3], ARGV[1])
return 0
