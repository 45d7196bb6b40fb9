-- RedisLabelQueue.purge_finished: forget a chunk of items finished before a time.
--
-- KEYS: finished, dedupe. ARGV: item key prefix, before, chunk size. Returns how many items
-- were forgotten. An item goes with its dedupe entry (if it still names that item), so that a
-- key is free again exactly when its item is gone.
local ids = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', '(' .. ARGV[2],
                       'LIMIT', 0, tonumber(ARGV[3]))
for _, id in ipairs(ids) do
  local key = ARGV[1] .. quote(id)
  local dedupe_key = redis.call('HGET', key, 'dedupe')
  if dedupe_key and redis.call('HGET', KEYS[2], dedupe_key) == id then
    redis.call('HDEL', KEYS[2], dedupe_key)
  end
  redis.call('DEL', key)
  redis.call('ZREM', KEYS[1], id)
end
return #ids
