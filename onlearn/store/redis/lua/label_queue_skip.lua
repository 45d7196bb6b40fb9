-- RedisLabelQueue.skip: put an item back in the queue, or drop it after max_skips.
--
-- KEYS: item, queue, leases, finished, counters. ARGV: item id, "1" when a claim id is given
-- (else "0"), the claim id, now, max_skips. Returns {status, item hash}. The same step as
-- complete, for the same reasons.
local item = redis.call('HMGET', KEYS[1], 'state', 'claim_id', 'member')
if not item[1] then
  return {'unknown'}
end
local refused = claim_verdict(item[1], item[2], ARGV[2], ARGV[3])
if refused then
  return {refused, redis.call('HGETALL', KEYS[1])}
end
unqueue(KEYS[2], KEYS[3], ARGV[1], item[1], item[3])
local skips = redis.call('HINCRBY', KEYS[1], 'skips', 1)
redis.call('HDEL', KEYS[1], 'lease_expires_at')
if skips >= tonumber(ARGV[5]) then
  redis.call('HSET', KEYS[1], 'state', 'skipped', 'finished_at', ARGV[4])
  redis.call('ZADD', KEYS[4], ARGV[4], ARGV[1])
else
  redis.call('HSET', KEYS[1], 'state', 'queued')
  redis.call('ZADD', KEYS[2], redis.call('HGET', KEYS[1], 'score'), item[3])
end
redis.call('HINCRBY', KEYS[5], 'skipped', 1)
return {'ok', redis.call('HGETALL', KEYS[1])}
