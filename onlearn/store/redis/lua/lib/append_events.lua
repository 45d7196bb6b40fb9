-- Library (put in front of log_append and registry_change_roles, never run alone):
-- append_events, the numbering and dedupe of log events.
--
-- The log's append, a Lua function shared by the append script and the change_roles script, so
-- that a control event is numbered and deduped exactly as any other event.
--
-- append_events(head, stream, keys, args, first, generation_key, generation): head counter, log
-- stream, idempotency hash; ``args`` from index ``first`` holds three values per event: "1" when
-- it has a key (else "0"), the key, the event JSON; then the store's generation key and the
-- generation id the caller read at open. Returns one seq per event, negative for a duplicate
-- (not appended). Raises ``ONLEARN_GENERATION <id found>`` (nothing written) when the store's
-- generation is not the caller's: a Redis emptied (restarted without its data, FLUSHALL) or
-- another store under the same address would otherwise be given events under seqs the caller
-- has already applied. Checked here, in the script that appends, so that no append slips in
-- between a check and the write (onlearn/store/generation.py).
--
-- One script for the whole batch because many serve replicas append to the same log at once:
-- reading the head, checking idempotency keys and adding entries must be one atomic step, or
-- two appenders could take the same seq, leave a gap, or both append the same key. Redis runs a
-- script alone, so the seqs of every call are unique and gapless, and a key is appended once.
-- Stream ids are explicit (0-<seq>), so a seq is the entry's id; the counter is kept apart from
-- the stream so that numbering continues after a trim has removed every entry; the stream's top
-- entry is read too, so that a counter that fell behind (lost, or restored from an older backup)
-- can never make XADD refuse the next id.
local function append_events(head_key, stream, keys_hash, args, first, generation_key, generation)
  local found = redis.call('GET', generation_key)
  if found ~= generation then
    error({err = 'ONLEARN_GENERATION ' .. (found or '')})
  end
  local counter = tonumber(redis.call('GET', head_key) or '0')
  local head = counter
  local top = redis.call('XREVRANGE', stream, '+', '-', 'COUNT', 1)[1]
  if top then
    head = math.max(head, tonumber(string.match(top[1], '^0%-(%d+)$')))
  end
  local seqs = {}
  for i = first, #args, 3 do
    local has_key, key, data = args[i], args[i + 1], args[i + 2]
    local known = false
    if has_key == '1' then
      known = redis.call('HGET', keys_hash, key)
    end
    if known then
      seqs[#seqs + 1] = -tonumber(known)  -- negative: a duplicate, not appended
    else
      head = head + 1
      local id = string.format('0-%d', head)
      if has_key == '1' then
        redis.call('XADD', stream, id, 'e', data, 'k', key)
        redis.call('HSET', keys_hash, key, head)
      else
        redis.call('XADD', stream, id, 'e', data)
      end
      seqs[#seqs + 1] = head
    end
  end
  if head ~= counter then
    redis.call('SET', head_key, string.format('%d', head))
  end
  return seqs
end
