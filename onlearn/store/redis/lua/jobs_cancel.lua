-- RedisJobQueue.cancel: cancel a job that is queued, or running and not committed.
--
-- KEYS: job, active. ARGV: job id, reason, now. Returns the job's hash (cancelled, or unchanged
-- when it cannot be cancelled), or nil for an unknown job. A ``committed`` field other than
-- '1' (absent in jobs of an earlier onlearn) is not committed: leases.cancellable, rule for rule.
--
-- Race prevented: a worker's commit (or claim, complete, fail, release) landing between reading
-- the job's state and ``committed`` and writing 'cancelled': the job would end cancelled while
-- its worker writes a version, or be leased again after it was cancelled. In one script, and
-- with commit a script too, every job ends cancelled or committed, never both. Leaving the
-- active set here is what keeps a cancelled job from ever being claimed again.
local job = redis.call('HMGET', KEYS[1], 'state', 'committed')
if not job[1] then
  return false
end
if job[1] == 'queued' or (job[1] == 'running' and job[2] ~= '1') then
  redis.call('HSET', KEYS[1], 'state', 'cancelled', 'error', ARGV[2], 'updated_at', ARGV[3])
  redis.call('HDEL', KEYS[1], 'lease_expires_at')
  redis.call('ZREM', KEYS[2], ARGV[1])
end
return redis.call('HGETALL', KEYS[1])
