-- RedisLabelQueue.close_answered: close the queued or claimed items whose prediction got its
-- label elsewhere (the application's feedback, or a person's label by another path).
--
-- KEYS: queue, leases, finished, counters, dedupe, waiting. ARGV: item key prefix, now, then per item its id and
-- its result JSON. Returns how many items were closed.
--
-- Race prevented: a claim taking the item between the check of its state and the close (one
-- script), and an item closed twice counting twice (only queued or claimed items are closed).
local closed = 0
for i = 3, #ARGV, 2 do
  local id = ARGV[i]
  local key = ARGV[1] .. quote(id)
  local item = redis.call('HMGET', key, 'state', 'member')
  if item[1] == 'queued' or item[1] == 'claimed' then
    unqueue(KEYS[1], KEYS[2], id, item[1], item[2])
    redis.call('HSET', key, 'state', 'done', 'result', ARGV[i + 1], 'finished_at', ARGV[2])
    redis.call('HDEL', key, 'lease_expires_at')
    redis.call('ZADD', KEYS[3], ARGV[2], id)
    free_dedupe(KEYS[5], key, id)  -- the same input may be asked again
    redis.call('ZREM', KEYS[6], id)
    closed = closed + 1
  end
end
if closed > 0 then
  redis.call('HINCRBY', KEYS[4], 'answered_elsewhere', closed)
end
return closed
