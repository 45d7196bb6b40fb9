-- RedisPredictionStore.purge_expired: delete a chunk of expired records and their index
-- entries.
--
-- KEYS: the expiry index, the id -> model hash, then the n record keys, then the n model
-- indexes (the expiry index again for an id without a model). ARGV: now, then the n ids, then
-- for each the model Python read from the hash, as '=' .. model ('' for none). Returns how many
-- records were purged.
--
-- The score is checked again inside the script: between the caller's range query and this
-- script, a put_many may have replaced a record with a later expires_at, which must survive.
-- So is the model: an id put again under another model meanwhile is left for the next round,
-- which reads its new model (its index key must be one this script was given).
local now = tonumber(ARGV[1])
local n = (#ARGV - 1) / 2
local purged = 0
for i = 1, n do
  local id = ARGV[1 + i]
  local score = redis.call('ZSCORE', KEYS[1], id)
  if score and tonumber(score) <= now then
    local model = redis.call('HGET', KEYS[2], id)
    local read = ARGV[1 + n + i]
    if (model and '=' .. model == read) or (not model and read == '') then
      redis.call('DEL', KEYS[2 + i])
      redis.call('ZREM', KEYS[1], id)
      if model then
        redis.call('ZREM', KEYS[2 + n + i], id)
        redis.call('HDEL', KEYS[2], id)
      end
      purged = purged + 1
    end
  end
end
return purged
