-- RedisLabelQueue.label: check the lease, append the label's events to the model's log and
-- mark the item done, in one step.
--
-- KEYS: item, queue, leases, finished, counters, dedupe, log head counter, log stream, log
-- idempotency hash, the store's generation, waiting. ARGV: item id, "1" when a claim id is given (else
-- "0"), the claim id, the result JSON without its seq (an object), now, the generation id the
-- caller read at open (append_events checks it), then per event the three values of
-- append_events. Returns {status, item hash, seqs} (seqs as append_events gives them: negative
-- for a key already in the log).
--
-- Race prevented: a label whose lease ran out and was claimed by someone else being appended
-- to the log and then refused, or the live holder's label then dropped as a duplicate. The
-- verdict, the append (lib/append_events, the log's own) and the item's end are one step, so a
-- refused label was not appended, and an appended one cannot lose its item to another claim.
local item = redis.call('HMGET', KEYS[1], 'state', 'claim_id', 'member', 'lease_expires_at')
if not item[1] then
  return {'unknown'}
end
local refused = claim_verdict(item[1], item[2], ARGV[2], ARGV[3], item[4], ARGV[5])
if refused then
  return {refused, redis.call('HGETALL', KEYS[1])}
end
local seqs = append_events(KEYS[7], KEYS[8], KEYS[9], ARGV, 7, KEYS[10], ARGV[6])
local top = 0
for _, seq in ipairs(seqs) do
  top = math.max(top, math.abs(seq))
end
-- The result is the caller's JSON object with the seq put first; the caller's text is kept as
-- it is (cjson would re-encode its floats with 14 digits).
local rest = string.sub(ARGV[4], 2)
local sep = ','
if rest == '}' then
  sep = ''
end
local result = '{"seq":' .. string.format('%d', top) .. sep .. rest
unqueue(KEYS[2], KEYS[3], ARGV[1], item[1], item[3])
redis.call('HSET', KEYS[1], 'state', 'done', 'result', result, 'finished_at', ARGV[5])
redis.call('HDEL', KEYS[1], 'lease_expires_at')
redis.call('ZADD', KEYS[4], ARGV[5], ARGV[1])
free_dedupe(KEYS[6], KEYS[1], ARGV[1])
redis.call('ZREM', KEYS[11], ARGV[1])
redis.call('HINCRBY', KEYS[5], 'labelled', 1)
return {'ok', redis.call('HGETALL', KEYS[1]), seqs}
