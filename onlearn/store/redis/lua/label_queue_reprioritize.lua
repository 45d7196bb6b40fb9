-- RedisLabelQueue.reprioritize: give queued items new priorities.
--
-- KEYS: queue, then one item key per item. ARGV: per item its new priority and score.
--
-- Race prevented: an item claimed meanwhile getting a queued rank again (it would be offered
-- twice); only items still queued move.
for i = 2, #KEYS do
  local item = redis.call('HMGET', KEYS[i], 'state', 'member')
  if item[1] == 'queued' then
    redis.call('HSET', KEYS[i], 'priority', ARGV[2 * i - 3], 'score', ARGV[2 * i - 2])
    redis.call('ZADD', KEYS[1], ARGV[2 * i - 2], item[2])
  end
end
return 0
