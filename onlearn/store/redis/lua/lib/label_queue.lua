-- Library (put in front of the label queue scripts that change an item's state, after
-- lib/quote, never run alone): the rules the label queue's scripts share.
--
-- leases.claim_verdict, rule for rule: why complete/skip with this claim id is refused, or nil
-- to accept. has_claim is '0' when the caller gave no claim id.
local function claim_verdict(state, item_claim, has_claim, claim)
  if state == 'done' then
    return 'already_done'
  end
  if state == 'skipped' or state == 'evicted' then
    return 'gone'
  end
  if has_claim == '0' or claim == item_claim then
    return nil
  end
  return 'conflict'
end

-- Take an item out of the queued order or the leases, whichever holds it.
local function unqueue(queue, leases, id, state, member)
  if state == 'queued' then
    redis.call('ZREM', queue, member)
  elseif state == 'claimed' then
    redis.call('ZREM', leases, id)
  end
end

-- Claimed items whose lease ran out (lease_expires_at <= now) go back to the queue, keeping
-- their claim id (a late complete of that claim is accepted until someone claims the item).
local function release_expired(queue, leases, counters, prefix, now)
  local ids = redis.call('ZRANGEBYSCORE', leases, '-inf', now)
  for _, id in ipairs(ids) do
    local key = prefix .. quote(id)
    local rank = redis.call('HMGET', key, 'score', 'member')
    redis.call('HSET', key, 'state', 'queued')
    redis.call('HDEL', key, 'lease_expires_at')
    redis.call('ZADD', queue, rank[1], rank[2])
    redis.call('ZREM', leases, id)
  end
  if #ids > 0 then
    redis.call('HINCRBY', counters, 'expired', #ids)
  end
  return #ids
end
