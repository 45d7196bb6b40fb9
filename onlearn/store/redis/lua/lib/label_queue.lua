-- Library (put in front of the label queue scripts that change an item's state, after
-- lib/quote, never run alone): the rules the label queue's scripts share.
--
-- leases.claim_verdict, rule for rule: why label/complete/skip/release with this claim id at
-- ``now`` is refused, or nil to accept. has_claim is '0' when the caller gave no claim id;
-- lease is the item's lease_expires_at (false when it holds none). Numbers are compared as the
-- doubles Python wrote (tonumber reads them exactly).
local function claim_verdict(state, item_claim, has_claim, claim, lease, now)
  if state == 'done' then
    return 'already_done'
  end
  if state == 'skipped' or state == 'evicted' then
    return 'gone'
  end
  if has_claim == '1' then
    if claim == item_claim then
      return nil
    end
    return 'conflict'
  end
  if state == 'claimed' and lease and tonumber(lease) > tonumber(now) then
    return 'conflict'  -- someone's lease is live: a label without a claim must not take it
  end
  return nil
end

-- An item left the waiting states (done, skipped out, evicted): its dedupe key is free again,
-- so that the same input can be asked again (if the key still names this item).
local function free_dedupe(dedupe, key, id)
  local dedupe_key = redis.call('HGET', key, 'dedupe')
  if dedupe_key and redis.call('HGET', dedupe, dedupe_key) == id then
    redis.call('HDEL', dedupe, dedupe_key)
  end
end

-- leases.passes_over: whether a claim by this labeller (has_labeller '0': nobody) leaves the
-- item alone, because that labeller skipped it last.
local function passes_over(key, has_labeller, labeller)
  return has_labeller == '1' and redis.call('HGET', key, 'skipped_by') == labeller
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
