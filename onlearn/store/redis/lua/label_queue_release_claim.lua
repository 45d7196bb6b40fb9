-- RedisLabelQueue.release: give a claim back without a label; the item is queued again.
--
-- KEYS: item, queue, leases, finished, counters, dedupe. ARGV: item id, "1", the claim id, now.
-- Returns {status, item hash}. The same verdict as complete, in the same step as the change,
-- so that a claim given back late cannot take the item from the labeller who holds it now.
local item = redis.call('HMGET', KEYS[1], 'state', 'claim_id', 'member', 'lease_expires_at')
if not item[1] then
  return {'unknown'}
end
local refused = claim_verdict(item[1], item[2], ARGV[2], ARGV[3], item[4], ARGV[4])
if refused then
  return {refused, redis.call('HGETALL', KEYS[1])}
end
if item[1] == 'claimed' then
  unqueue(KEYS[2], KEYS[3], ARGV[1], item[1], item[3])
  redis.call('HSET', KEYS[1], 'state', 'queued')
  redis.call('HDEL', KEYS[1], 'lease_expires_at')
  redis.call('ZADD', KEYS[2], redis.call('HGET', KEYS[1], 'score'), item[3])
  redis.call('HINCRBY', KEYS[5], 'released', 1)
end
return {'ok', redis.call('HGETALL', KEYS[1])}
