-- RedisJobQueue.commit: flag a job the worker holds as committed (cancel no longer stops it).
--
-- KEYS: job. ARGV: worker, now. Returns the job's hash, or nil when the worker does not hold it
-- (cancelled, reclaimed by another worker, finished). The other half of cancel's race: the check
-- that the worker still holds the (uncancelled) job and the flag that stops cancel are one step.
-- Committing again writes nothing.
local job = redis.call('HMGET', KEYS[1], 'state', 'worker', 'committed')
if job[1] ~= 'running' or job[2] ~= ARGV[1] then
  return false
end
if job[3] ~= '1' then
  redis.call('HSET', KEYS[1], 'committed', '1', 'updated_at', ARGV[2])
end
return redis.call('HGETALL', KEYS[1])
