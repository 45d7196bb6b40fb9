-- RedisLabelQueue.peek: the first items in claim order, without claiming them.
--
-- KEYS: queue. ARGV: item key prefix, limit. Returns the items' hashes. A script only so that
-- the order and the items are read at one moment (no item claimed in between shows up).
local items = {}
for i, member in ipairs(redis.call('ZRANGE', KEYS[1], 0, tonumber(ARGV[2]) - 1)) do
  items[i] = redis.call('HGETALL', ARGV[1] .. quote(string.sub(member, 17)))
end
return items
