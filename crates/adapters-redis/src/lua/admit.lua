-- admit: one admission tick (QueueStore::admit).
-- KEYS: 1 cursor hash, 2 waiting list, 3 active zset
-- ARGV: 1 token key prefix, 2 now (µs; '' = Redis' TIME), 3 batch N, 4 interval M (µs),
--       5 active TTL (µs), 6 max active ('' = no cap)
-- Reply: { 'wait', µs until due } or { 'admitted', n }
--
-- Atomic and serialised against every other caller on every instance (Redis runs one script
-- at a time), and timed on one clock, so together they admit at most N per interval.
local now = clock(ARGV[2])
local last = redis.call('HGET', KEYS[1], 'last')
local interval = tonumber(ARGV[4])

-- Mirrors AdmissionPolicy::is_due: due when nothing was admitted yet or now >= last + M.
if last and now < tonumber(last) + interval then
  return { 'wait', int(tonumber(last) + interval - now) }
end

-- Mirrors AdmissionPolicy::quota: min(N, cap - active (never below 0), waiting), with active
-- the tokens ACTIVE and unexpired at now (expires_at > now, QueueToken::status_at), counted
-- only when there is a cap.
local n = math.min(tonumber(ARGV[3]), redis.call('LLEN', KEYS[2]))
if ARGV[6] ~= '' then
  local active = redis.call('ZCOUNT', KEYS[3], '(' .. int(now), '+inf')
  n = math.min(n, math.max(tonumber(ARGV[6]) - active, 0))
end

if n > 0 then
  -- The list holds the WAITING tokens in seq order, so its head is the n lowest.
  local values = redis.call('LPOP', KEYS[2], n)
  local at = int(now)
  local expires = int(now + tonumber(ARGV[5])) -- mirrors AdmissionPolicy::expiry_for
  for _, value in ipairs(values) do
    redis.call('HSET', ARGV[1] .. value, 'status', 'ACTIVE', 'activated', at, 'expires', expires)
    redis.call('ZADD', KEYS[3], expires, value)
  end
  redis.call('HINCRBY', KEYS[1], 'admitted', int(n))
  redis.call('HSET', KEYS[1], 'last', at)
end
return { 'admitted', int(n) }
