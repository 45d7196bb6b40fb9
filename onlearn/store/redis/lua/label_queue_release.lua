-- RedisLabelQueue.release_expired: put the items whose lease ran out back in the queue.
--
-- KEYS: queue, leases, counters. ARGV: item key prefix, now. Returns how many were released.
-- One step, so that an item's lease, state and place in the queue never disagree.
return release_expired(KEYS[1], KEYS[2], KEYS[3], ARGV[1], ARGV[2])
