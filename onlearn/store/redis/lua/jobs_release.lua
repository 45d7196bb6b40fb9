-- RedisJobQueue.release: give a job the worker holds back to the queue, attempt not counted.
--
-- KEYS: job. ARGV: worker, now. Returns the job's hash, or nil when the worker does not hold it.
-- The job stays in the active set (queued and running jobs both are). Race prevented: a worker
-- whose lease ran out and whose job another worker reclaimed giving that job back (the check
-- and the write are one step), and a release undoing a cancel that landed just before it.
local job = redis.call('HMGET', KEYS[1], 'state', 'worker', 'attempts')
if job[1] ~= 'running' or job[2] ~= ARGV[1] then
  return false
end
local attempts = math.max(tonumber(job[3]) - 1, 0)
redis.call('HSET', KEYS[1], 'state', 'queued', 'run_after', ARGV[2],
           'attempts', string.format('%d', attempts), 'updated_at', ARGV[2])
redis.call('HDEL', KEYS[1], 'lease_expires_at', 'worker')
return redis.call('HGETALL', KEYS[1])
