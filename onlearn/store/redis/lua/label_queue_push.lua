-- RedisLabelQueue.push: queue an item (deduped), evicting the last in rank from a full queue.
--
-- KEYS: item, queue, dedupe, counters, finished, waiting. ARGV: item key prefix, item id, "1" when the
-- item has a dedupe key (else "0"), the dedupe key, max_size, score, member, enqueued_at, then
-- the item's hash as field, value pairs. Returns {status, item id, evicted id}.
--
-- The dedupe hash names the item still waiting (queued or claimed) for each key: the same input
-- is asked again once its item is done, skipped out or evicted.
--
-- Races prevented: two replicas pushing one feature vector both passing the dedupe check; two
-- pushes into a full queue both evicting the same victim, or together growing it past the bound.
local item, queue, dedupe, counters, finished = KEYS[1], KEYS[2], KEYS[3], KEYS[4], KEYS[5]
local id, member = ARGV[2], ARGV[7]
-- Pushing an item id again is a duplicate too, so that a retried push is harmless.
if redis.call('EXISTS', item) == 1 then
  redis.call('HINCRBY', counters, 'duplicates', 1)
  return {'duplicate', id, ''}
end
if ARGV[3] == '1' then
  local existing = redis.call('HGET', dedupe, ARGV[4])
  -- Only an item still waiting holds its key. Items leave the hash when they finish; a store
  -- written by an earlier onlearn still names done and skipped ones, which hold nothing.
  if existing then
    local state = redis.call('HGET', ARGV[1] .. quote(existing), 'state')
    if state == 'queued' or state == 'claimed' then
      redis.call('HINCRBY', counters, 'duplicates', 1)
      return {'duplicate', existing, ''}
    end
  end
end
local evicted = ''
redis.call('ZADD', queue, ARGV[6], member)
if redis.call('ZCARD', queue) > tonumber(ARGV[5]) then
  -- It was full: the last in rank leaves. When that is the new item, it ranked no better
  -- than every queued one and is rejected.
  local last = redis.call('ZRANGE', queue, -1, -1)[1]
  redis.call('ZREM', queue, last)
  if last == member then
    redis.call('HINCRBY', counters, 'rejected', 1)
    return {'rejected', '', ''}
  end
  evicted = string.sub(last, 17)
  local victim = ARGV[1] .. quote(evicted)
  -- push has no clock: the new item's enqueued_at is when the victim left.
  redis.call('HSET', victim, 'state', 'evicted', 'finished_at', ARGV[8])
  redis.call('ZADD', finished, ARGV[8], evicted)
  redis.call('ZREM', KEYS[6], evicted)
  local key = redis.call('HGET', victim, 'dedupe')
  if key and redis.call('HGET', dedupe, key) == evicted then
    redis.call('HDEL', dedupe, key)
  end
  redis.call('HINCRBY', counters, 'evicted', 1)
end
redis.call('HSET', item, unpack(ARGV, 9))
redis.call('ZADD', KEYS[6], ARGV[8], id)
if ARGV[3] == '1' then
  redis.call('HSET', dedupe, ARGV[4], id)
end
redis.call('HINCRBY', counters, 'pushed', 1)
return {'queued', id, evicted}
