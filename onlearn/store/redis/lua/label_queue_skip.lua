-- RedisLabelQueue.skip: put an item back in the queue, or drop it after max_skips.
--
-- KEYS: item, queue, leases, finished, counters, dedupe, waiting. ARGV: item id, "1" when a claim id is
-- given (else "0"), the claim id, now, max_skips, "1" when a labeller is named (else "0"), the
-- labeller. Returns {status, item hash}. The same step as complete, for the same reasons; the
-- skipper (leases.skipper) is kept as skipped_by, which claims by that labeller pass over.
local item = redis.call('HMGET', KEYS[1], 'state', 'claim_id', 'member', 'lease_expires_at',
                        'labeller')
if not item[1] then
  return {'unknown'}
end
local refused = claim_verdict(item[1], item[2], ARGV[2], ARGV[3], item[4], ARGV[4])
if refused then
  return {refused, redis.call('HGETALL', KEYS[1])}
end
unqueue(KEYS[2], KEYS[3], ARGV[1], item[1], item[3])
local skips = redis.call('HINCRBY', KEYS[1], 'skips', 1)
redis.call('HDEL', KEYS[1], 'lease_expires_at')
local by = false
if ARGV[6] == '1' then
  by = ARGV[7]
elseif ARGV[2] == '1' then
  by = item[5]
end
if by then
  redis.call('HSET', KEYS[1], 'skipped_by', by)
else
  redis.call('HDEL', KEYS[1], 'skipped_by')
end
if skips >= tonumber(ARGV[5]) then
  redis.call('HSET', KEYS[1], 'state', 'skipped', 'finished_at', ARGV[4])
  redis.call('ZADD', KEYS[4], ARGV[4], ARGV[1])
  free_dedupe(KEYS[6], KEYS[1], ARGV[1])
  redis.call('ZREM', KEYS[7], ARGV[1])
else
  redis.call('HSET', KEYS[1], 'state', 'queued')
  redis.call('ZADD', KEYS[2], redis.call('HGET', KEYS[1], 'score'), item[3])
end
redis.call('HINCRBY', KEYS[5], 'skipped', 1)
return {'ok', redis.call('HGETALL', KEYS[1])}
