-- RedisPredictionStore.scan: forget the ids whose record has gone from a model's index.
--
-- KEYS: a model's index of ids, the id -> model hash, then one record key per id. ARGV: the
-- model, then the ids (ARGV[i + 1] is the id of KEYS[i + 2]). Returns how many were removed.
--
-- scan found these ids' records gone (Redis expired them) or put again under another model; the
-- check is repeated here, in one step with the removal, because a put_many may have written the
-- record again (for this model) since scan read it. put_many writes the record, then the hash,
-- then the index, so an entry removed just before such a put is added back by the put itself.
local removed = 0
for i = 2, #ARGV do
  if redis.call('EXISTS', KEYS[i + 1]) == 0 or redis.call('HGET', KEYS[2], ARGV[i]) ~= ARGV[1] then
    removed = removed + redis.call('ZREM', KEYS[1], ARGV[i])
  end
end
return removed
