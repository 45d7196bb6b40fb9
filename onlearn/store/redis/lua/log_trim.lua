-- RedisEventLog.trim: remove a chunk of the oldest entries and their idempotency keys.
--
-- KEYS: log stream, idempotency hash. ARGV: upto, chunk size. Returns how many were removed.
--
-- The entries and their idempotency keys go together: a key must never outlive its event (the
-- contract forgets trimmed keys, like the other backends), nor an event lose its key while it is
-- still in the log, or a retried label could be appended twice.
local entries = redis.call('XRANGE', KEYS[1], '-', string.format('0-%d', ARGV[1]),
                           'COUNT', ARGV[2])
if #entries == 0 then
  return 0
end
for _, entry in ipairs(entries) do
  local fields = entry[2]
  for i = 1, #fields, 2 do
    if fields[i] == 'k' then
      redis.call('HDEL', KEYS[2], fields[i + 1])
    end
  end
end
local last = tonumber(string.match(entries[#entries][1], '^0%-(%d+)$'))
redis.call('XTRIM', KEYS[1], 'MINID', string.format('0-%d', last + 1))
return #entries
