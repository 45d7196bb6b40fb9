-- RedisJobQueue.complete: mark a job the worker holds done, with its result.
--
-- KEYS: job, active. ARGV: job id, worker, result JSON, now. Returns the job's hash, or nil
-- when the worker does not hold it. Race prevented: a worker whose lease ran out finishing a job
-- that another worker reclaimed, and a job finished twice (a done job is returned unchanged).
local job = redis.call('HMGET', KEYS[1], 'state', 'worker')
if job[1] == 'done' then
  return redis.call('HGETALL', KEYS[1])
end
if job[1] ~= 'running' or job[2] ~= ARGV[2] then
  return false
end
redis.call('HSET', KEYS[1], 'state', 'done', 'result', ARGV[3], 'updated_at', ARGV[4])
redis.call('HDEL', KEYS[1], 'lease_expires_at')
redis.call('ZREM', KEYS[2], ARGV[1])
return redis.call('HGETALL', KEYS[1])
