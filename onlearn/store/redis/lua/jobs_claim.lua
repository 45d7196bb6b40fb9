-- RedisJobQueue.claim: lease the oldest runnable job to a worker.
--
-- KEYS: active. ARGV: job key prefix, worker, now, lease_expires_at, "1" when kinds follow
-- (else "0"), the kinds. Returns {the claimed job's hash or an empty list, the hashes of the
-- jobs skipped because their worker died on their last allowed attempt}.
--
-- Race prevented: two workers leasing the same job (the pick and the lease are one step). The
-- poisoned jobs are left as they are: the caller marks them failed with leases.reclaim_error
-- through jobs_fail_poisoned.lua, which checks that nothing changed in between.
local now = tonumber(ARGV[3])
local kinds = false
if ARGV[5] == '1' then
  kinds = {}
  for i = 6, #ARGV do
    kinds[ARGV[i]] = true
  end
end
local poisoned = {}
local start = 0
while true do
  local ids = redis.call('ZRANGE', KEYS[1], start, start + 99)
  for _, id in ipairs(ids) do
    local key = ARGV[1] .. quote(id)
    local job = redis.call('HMGET', key, 'state', 'run_after', 'lease_expires_at', 'attempts',
                           'max_attempts', 'kind')
    if not kinds or kinds[job[6]] then
      local runnable = job[1] == 'queued' and tonumber(job[2]) <= now
      if job[1] == 'running' and job[3] and tonumber(job[3]) <= now then
        if tonumber(job[4]) >= tonumber(job[5]) then
          poisoned[#poisoned + 1] = redis.call('HGETALL', key)
        else
          runnable = true
        end
      end
      if runnable then
        redis.call('HINCRBY', key, 'attempts', 1)
        redis.call('HSET', key, 'state', 'running', 'worker', ARGV[2],
                   'lease_expires_at', ARGV[4], 'updated_at', ARGV[3])
        return {redis.call('HGETALL', key), poisoned}
      end
    end
  end
  if #ids < 100 then
    return {{}, poisoned}
  end
  start = start + 100
end
