-- RedisLabelQueue.claim: release expired leases, then lease the head of the queue (or
-- chosen items) to one claim.
--
-- KEYS: queue, leases, counters. ARGV: item key prefix, now, lease_expires_at, "1" when there
-- is a labeller (else "0"), the labeller, limit, the claim ids (16 hex digits each, one per item
-- that may be claimed), "1" when item ids follow (else "0"), the item ids. Returns the claimed
-- items' hashes, in claim order.
--
-- Items the labeller skipped last (skipped_by) are passed over: others still get them.
--
-- Race prevented: two labellers claiming at once getting the same item. Releasing expired
-- leases, picking the head of the order (or the chosen ids still queued) and leasing them is
-- one step, so an item is leased to one claim.
local queue, leases, counters, prefix = KEYS[1], KEYS[2], KEYS[3], ARGV[1]
release_expired(queue, leases, counters, prefix, ARGV[2])
local limit, claim_ids = tonumber(ARGV[6]), ARGV[7]
local claimed = {}
local function take(id, key, member)
  local n = #claimed + 1
  redis.call('ZREM', queue, member)
  redis.call('HINCRBY', key, 'attempts', 1)
  redis.call('HSET', key, 'state', 'claimed', 'lease_expires_at', ARGV[3],
             'claim_id', string.sub(claim_ids, 16 * n - 15, 16 * n))
  if ARGV[4] == '1' then
    redis.call('HSET', key, 'labeller', ARGV[5])
  else
    redis.call('HDEL', key, 'labeller')
  end
  redis.call('ZADD', leases, ARGV[3], id)
  claimed[n] = redis.call('HGETALL', key)
end
if ARGV[8] == '1' then
  for i = 9, #ARGV do
    if #claimed >= limit then
      break
    end
    local key = prefix .. quote(ARGV[i])
    local item = redis.call('HMGET', key, 'state', 'member')
    if item[1] == 'queued' and not passes_over(key, ARGV[4], ARGV[5]) then
      take(ARGV[i], key, item[2])
    end
  end
elseif limit > 0 then
  -- The head of the order, passing over what this labeller skipped last: read page by page
  -- first, then leased (leasing takes members out of the order being read).
  local chosen = {}
  local start = 0
  while #chosen < limit do
    local page = redis.call('ZRANGE', queue, start, start + limit - 1)
    for _, member in ipairs(page) do
      local id = string.sub(member, 17)
      local key = prefix .. quote(id)
      if not passes_over(key, ARGV[4], ARGV[5]) then
        chosen[#chosen + 1] = {id, key, member}
        if #chosen == limit then
          break
        end
      end
    end
    if #page < limit then
      break
    end
    start = start + limit
  end
  for _, c in ipairs(chosen) do
    take(c[1], c[2], c[3])
  end
end
return claimed
