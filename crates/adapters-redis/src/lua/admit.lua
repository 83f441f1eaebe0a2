-- admit: one admission tick (QueueStore::admit).
-- KEYS: 1 cursor hash, 2 waiting list, 3 active zset
-- ARGV: 1 token key prefix, 2 now (µs; '' = Redis' TIME), 3 batch N, 4 interval M (µs),
--       5 active TTL (µs), 6 max active ('' = no cap), 7 abandon after (µs; '' = never),
--       8 user key prefix, 9 retention of expired tokens (ms)
-- Reply: { 'wait', µs until due }, { 'admitted', n, skipped } or { 'drawing' } while a draw of
--        this line is claimed and unfinished (admission waits for the drawn order)
--
-- Atomic and serialised against every other caller on every instance (Redis runs one script
-- at a time), and timed on one clock, so together they admit at most N per interval.
local now = clock(ARGV[2])
if drawing(KEYS[1]) then
  return { 'drawing' }
end
local last = redis.call('HGET', KEYS[1], 'last')
local interval = tonumber(ARGV[4])

-- Mirrors AdmissionPolicy::is_due: due when nothing was admitted yet or now >= last + M.
if last and now < tonumber(last) + interval then
  return { 'wait', int(tonumber(last) + interval - now) }
end

-- Mirrors AdmissionPolicy::quota: min(N, cap - active (never below 0), waiting), with active
-- the tokens ACTIVE and unexpired at now (expires_at > now, QueueToken::status_at), counted
-- only when there is a cap. `waiting` counts every WAITING token, present or not.
local n = math.min(tonumber(ARGV[3]), redis.call('LLEN', KEYS[2]))
if ARGV[6] ~= '' then
  local active = redis.call('ZCOUNT', KEYS[3], '(' .. int(now), '+inf')
  n = math.min(n, math.max(tonumber(ARGV[6]) - active, 0))
end

local at = int(now)
local expires = int(now + tonumber(ARGV[5])) -- mirrors AdmissionPolicy::expiry_for
local abandon_after = ARGV[7] ~= '' and tonumber(ARGV[7]) or nil
local admitted, skipped = 0, 0
-- The list holds the WAITING tokens in seq order, so its head is the lowest. Without
-- abandon_after every token popped is admitted (one pop of n); with it, absent tokens met
-- before the n-th present one are skipped, so pop again for what is still missing.
while admitted < n do
  local values = redis.call('LPOP', KEYS[2], n - admitted)
  if not values then
    break
  end
  for _, value in ipairs(values) do
    local key = ARGV[1] .. value
    local present = true
    if abandon_after then
      local t = redis.call('HMGET', key, 'issued', 'seen', 'user')
      local seen = math.max(tonumber(t[1]) or 0, tonumber(t[2]) or 0)
      -- Mirrors AdmissionPolicy::is_present: present while now < last_seen + abandon_after,
      -- last_seen the later of the issue and the last note_seen.
      present = now < seen + abandon_after
      if not present then
        redis.call('HSET', key, 'expires', at)
        retire(key, value, ARGV[8] .. t[3], ARGV[9], 'ABANDONED')
        skipped = skipped + 1
      end
    end
    if present then
      redis.call('HSET', key, 'status', 'ACTIVE', 'activated', at, 'expires', expires)
      redis.call('ZADD', KEYS[3], expires, value)
      admitted = admitted + 1
    end
  end
end
if admitted + skipped > 0 then
  redis.call('HINCRBY', KEYS[1], 'admitted', int(admitted + skipped))
end
if skipped > 0 then
  redis.call('HINCRBY', KEYS[1], 'abandoned', int(skipped))
end
if admitted > 0 then
  redis.call('HSET', KEYS[1], 'last', at)
end
return { 'admitted', int(admitted), int(skipped) }
