-- RedisJobQueue.claim, second step: mark failed a job whose worker died on its last
-- allowed attempt.
--
-- KEYS: job, active. ARGV: job id, attempts and lease_expires_at as the claim script saw them,
-- the error, now. Returns 1 when the job was marked failed, 0 when it changed meanwhile.
local job = redis.call('HMGET', KEYS[1], 'state', 'attempts', 'lease_expires_at')
if job[1] ~= 'running' or job[2] ~= ARGV[2] or job[3] ~= ARGV[3] then
  return 0
end
redis.call('HSET', KEYS[1], 'state', 'failed', 'error', ARGV[4], 'updated_at', ARGV[5])
redis.call('HDEL', KEYS[1], 'lease_expires_at')
redis.call('ZREM', KEYS[2], ARGV[1])
return 1
