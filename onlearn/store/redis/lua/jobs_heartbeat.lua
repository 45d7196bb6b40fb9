-- RedisJobQueue.heartbeat: extend the lease of a job the worker holds.
--
-- KEYS: job. ARGV: worker, lease_expires_at, now. Returns 1 when extended, 0 when the worker
-- does not hold the job. One step: a lease is never extended for a worker that lost it.
local job = redis.call('HMGET', KEYS[1], 'state', 'worker')
if job[1] ~= 'running' or job[2] ~= ARGV[1] then
  return 0
end
redis.call('HSET', KEYS[1], 'lease_expires_at', ARGV[2], 'updated_at', ARGV[3])
return 1
