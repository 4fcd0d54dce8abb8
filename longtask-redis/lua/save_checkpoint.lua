-- save_checkpoint.lua: stores a running attempt's checkpoint under its live lease (a stale lease,
-- a finished task or an unknown task changes nothing and creates nothing): the state and what
-- the record shows of it replace the task's previous ones, in the task's hash (so they go with
-- it at purge and expire with it). When the checkpoint carries progress, the task's progress is
-- set in the same change and published, exactly as report.lua does.
-- ARGV: id, token, state (JSON), info (CheckpointInfo JSON), progress ("" or JSON).
-- Returns 1 applied, 0 stale.
local id, token, state, info, progress = ARGV[1], ARGV[2], ARGV[3], ARGV[4], ARGV[5]
local key = k_task(id)
local h = redis.call('HMGET', key, 'status', 'token')
if h[1] ~= 'running' or h[2] ~= token then
  return 0
end
if progress ~= '' then
  redis.call('HSET', key, 'checkpoint', state, 'checkpoint_info', info, 'progress', progress)
  publish_task(id, 'p' .. progress)
else
  redis.call('HSET', key, 'checkpoint', state, 'checkpoint_info', info)
end
return 1
