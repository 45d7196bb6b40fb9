-- RedisJobQueue.enqueue: store a job, unless its id or idempotency key is known.
--
-- KEYS: job, key index, active, all, the model's index. ARGV: job key prefix, job id, "1" when
-- the job has a key (else "0"), the key, created_at, then the job's hash as field, value pairs.
-- Returns the hash of the job found under that id or key, or nil when the job was stored.
--
-- Race prevented: two workers enqueueing one idempotency key both storing a job.
if redis.call('EXISTS', KEYS[1]) == 1 then
  return redis.call('HGETALL', KEYS[1])
end
if ARGV[3] == '1' then
  local other = redis.call('HGET', KEYS[2], ARGV[4])
  if other then
    return redis.call('HGETALL', ARGV[1] .. quote(other))
  end
end
redis.call('HSET', KEYS[1], unpack(ARGV, 6))
if ARGV[3] == '1' then
  redis.call('HSET', KEYS[2], ARGV[4], ARGV[2])
end
redis.call('ZADD', KEYS[3], ARGV[5], ARGV[2])
redis.call('ZADD', KEYS[4], ARGV[5], ARGV[2])
redis.call('ZADD', KEYS[5], ARGV[5], ARGV[2])
return false
