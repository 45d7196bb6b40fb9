-- RedisRegistry.set_role: give or take a role, with its audit entry.
--
-- KEYS: versions hash, roles hash, role history list. ARGV: role, "1" to set (else remove), the
-- version, its number, and the audit entry's JSON without its closing brace, ending in
-- ',"previous":'. Returns 0 when the version does not exist (nothing changed), else 1.
--
-- Checking the version, reading the previous holder, changing the role and appending the audit
-- entry are one step: two concurrent promotions cannot both record the same "previous", a role
-- never changes without its audit entry, and a version cannot be given a role unchecked.
-- The previous version is spliced into the entry as a JSON string (cjson.encode of a string is
-- exact) so that the floats of the entry, encoded by Python, are never re-encoded by cjson.
if ARGV[2] == '1' and redis.call('HEXISTS', KEYS[1], ARGV[4]) == 0 then
  return 0
end
local previous = redis.call('HGET', KEYS[2], ARGV[1])
if ARGV[2] == '1' then
  redis.call('HSET', KEYS[2], ARGV[1], ARGV[3])
else
  redis.call('HDEL', KEYS[2], ARGV[1])
end
local previous_json = 'null'
if previous then
  previous_json = cjson.encode(previous)
end
redis.call('RPUSH', KEYS[3], ARGV[5] .. previous_json .. '}')
return 1
