-- RedisEventLog.append: append a batch of events, numbered and deduped in one step.
--
-- KEYS: log head counter, log stream, idempotency hash, the store's generation. ARGV: the
-- generation id the caller read at open, then per event the three values of append_events.
return append_events(KEYS[1], KEYS[2], KEYS[3], ARGV, 2, KEYS[4], ARGV[1])
