-- RedisLabelQueue.peek: the first items in claim order, without claiming them.
--
-- KEYS: queue. ARGV: item key prefix, limit, "1" when the items a labeller skipped last are
-- passed over (else "0"), that labeller. Returns the items' hashes. A script only so that the
-- order and the items are read at one moment (no item claimed in between shows up).
local limit = tonumber(ARGV[2])
local items = {}
local start = 0
while #items < limit do
  local page = redis.call('ZRANGE', KEYS[1], start, start + limit - 1)
  for _, member in ipairs(page) do
    local key = ARGV[1] .. quote(string.sub(member, 17))
    if not passes_over(key, ARGV[3], ARGV[4]) then
      items[#items + 1] = redis.call('HGETALL', key)
      if #items == limit then
        break
      end
    end
  end
  if #page < limit then
    break
  end
  start = start + limit
end
return items
