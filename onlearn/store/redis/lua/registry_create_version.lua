-- RedisRegistry.create_version: number and store a new version (or find it by its key).
--
-- KEYS: last version number, versions hash, idempotency keys hash. ARGV: the version JSON, "1"
-- when there is a key (else "0"), the key. Returns {number} for a new version, or {number, JSON}
-- of the version registered before under that key.
--
-- INCR and HSET in one step: concurrent creators (worker, admin calls on several replicas) get
-- unique numbers, and no number is ever taken without its version being stored (a MULTI could
-- not feed INCR's result to HSET; WATCH would retry under contention). The key is looked up in
-- the same step, so two workers running one retried job register one version, not two.
if ARGV[2] == '1' then
  local known = redis.call('HGET', KEYS[3], ARGV[3])
  if known then
    return {tonumber(known), redis.call('HGET', KEYS[2], known)}
  end
end
local number = redis.call('INCR', KEYS[1])
redis.call('HSET', KEYS[2], number, ARGV[1])
if ARGV[2] == '1' then
  redis.call('HSET', KEYS[3], ARGV[3], number)
end
return {number}
