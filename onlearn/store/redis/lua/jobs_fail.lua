-- RedisJobQueue.fail: retry a job the worker holds later, or mark it failed.
--
-- KEYS: job, active. ARGV: job id, worker, error, now, run_after ("" when the error cannot go
-- away: FAILED at once). Returns the job's hash, or nil when the worker does not hold it. The
-- same step as complete, for the same reasons.
local job = redis.call('HMGET', KEYS[1], 'state', 'worker', 'attempts', 'max_attempts')
if job[1] ~= 'running' or job[2] ~= ARGV[2] then
  return false
end
if ARGV[5] == '' or tonumber(job[3]) >= tonumber(job[4]) then
  redis.call('HSET', KEYS[1], 'state', 'failed')
  redis.call('ZREM', KEYS[2], ARGV[1])
else
  redis.call('HSET', KEYS[1], 'state', 'queued', 'run_after', ARGV[5])
end
redis.call('HSET', KEYS[1], 'error', ARGV[3], 'updated_at', ARGV[4])
redis.call('HDEL', KEYS[1], 'lease_expires_at')
return redis.call('HGETALL', KEYS[1])
