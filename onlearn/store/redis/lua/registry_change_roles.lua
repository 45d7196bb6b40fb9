-- RedisRegistry.change_roles: append a control event to the log and change roles, canary
-- share and audit entries with it, in one step.
--
-- KEYS: log head counter, log stream, log idempotency hash, versions hash, roles hash, role
-- history list, roles state hash, the store's generation. ARGV: the control event's three append_events values (has key,
-- key, JSON), "1" when a canary share is given (else "0"), the share, the number of changes,
-- then per change five values: role, "1" to give the role (else remove it), the version, its
-- number, and the audit entry's JSON without its closing brace, ending in ',"seq":'; last, the
-- generation id the caller read at open (append_events checks it).
-- Returns {0, seq} when applied, {1, seq} when the event's key was in the log already (nothing
-- changed), {2, version} when a version does not exist (nothing changed).
--
-- The race this prevents: two admins promote at once through different replicas. Were the
-- append and the role changes separate steps, A could append at seq 7, B append at seq 8 and set
-- its roles, then A set its roles: the roles would say A while every follower of the log ends on
-- B's event, and replicas would disagree with the registry forever. A crash between the two
-- steps would leave an event without its roles, or roles without their event. In one script the
-- event, the roles, the canary share, the state's seq and the audit rows change together, in
-- log order. Versions are checked before anything is written (a script that raised halfway
-- would keep its earlier writes).
if ARGV[1] == '1' then
  local known = redis.call('HGET', KEYS[3], ARGV[2])
  if known then
    return {1, tonumber(known)}
  end
end
local count = tonumber(ARGV[6])
for i = 0, count - 1 do
  local at = 7 + i * 5
  if ARGV[at + 1] == '1' and redis.call('HEXISTS', KEYS[4], ARGV[at + 3]) == 0 then
    return {2, ARGV[at + 2]}
  end
end
local seq = append_events(
  KEYS[1], KEYS[2], KEYS[3], {ARGV[1], ARGV[2], ARGV[3]}, 1, KEYS[8], ARGV[#ARGV])[1]
local seq_text = string.format('%d', seq)
for i = 0, count - 1 do
  local at = 7 + i * 5
  local role = ARGV[at]
  local version = false
  if ARGV[at + 1] == '1' then
    version = ARGV[at + 2]
  end
  local previous = redis.call('HGET', KEYS[5], role)
  if previous ~= version then
    if version then
      redis.call('HSET', KEYS[5], role, version)
    else
      redis.call('HDEL', KEYS[5], role)
    end
    local previous_json = 'null'
    if previous then
      previous_json = cjson.encode(previous)
    end
    redis.call('RPUSH', KEYS[6],
               ARGV[at + 4] .. seq_text .. ',"previous":' .. previous_json .. '}')
  end
end
if ARGV[4] == '1' then
  redis.call('HSET', KEYS[7], 'canary_share', ARGV[5])
end
redis.call('HSET', KEYS[7], 'seq', seq_text)
return {0, seq}
