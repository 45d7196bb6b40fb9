-- RedisLabelQueue.complete: record a label for a claimed or queued item.
--
-- KEYS: item, queue, leases, finished, counters, dedupe, waiting. ARGV: item id, "1" when a claim id is
-- given (else "0"), the claim id, the result JSON, now. Returns {status, item hash}.
--
-- Race prevented: a labeller whose lease ran out finishing an item another labeller claimed
-- since (the verdict and the write are one step), and two labels of one item both counting.
local item = redis.call('HMGET', KEYS[1], 'state', 'claim_id', 'member', 'lease_expires_at')
if not item[1] then
  return {'unknown'}
end
local refused = claim_verdict(item[1], item[2], ARGV[2], ARGV[3], item[4], ARGV[5])
if refused then
  return {refused, redis.call('HGETALL', KEYS[1])}
end
unqueue(KEYS[2], KEYS[3], ARGV[1], item[1], item[3])
redis.call('HSET', KEYS[1], 'state', 'done', 'result', ARGV[4], 'finished_at', ARGV[5])
redis.call('HDEL', KEYS[1], 'lease_expires_at')
redis.call('ZADD', KEYS[4], ARGV[5], ARGV[1])
free_dedupe(KEYS[6], KEYS[1], ARGV[1])
redis.call('ZREM', KEYS[7], ARGV[1])
redis.call('HINCRBY', KEYS[5], 'labelled', 1)
return {'ok', redis.call('HGETALL', KEYS[1])}
