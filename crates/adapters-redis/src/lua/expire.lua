-- expire: marks ACTIVE tokens whose time is up EXPIRED, a batch at a time
-- (QueueStore::expire_tokens).
-- KEYS: 1 active zset
-- ARGV: 1 token key prefix, 2 user key prefix, 3 now (µs; '' = Redis' TIME), 4 most to change,
--       5 retention of expired tokens (ms)
-- Reply: how many tokens changed
--
-- Atomic, and each token leaves the zset in the script that expires it, so concurrent sweeps
-- change each token once.
local now = clock(ARGV[3])
-- Mirrors QueueToken::status_at: an ACTIVE token is EXPIRED from expires_at on (now >= it).
local due = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', int(now), 'LIMIT', 0, ARGV[4])
local changed = 0
for _, value in ipairs(due) do
  local key = ARGV[1] .. value
  local t = redis.call('HMGET', key, 'status', 'user')
  if t[1] == 'ACTIVE' then
    retire(key, value, ARGV[2] .. t[2], ARGV[5], 'TTL')
    changed = changed + 1
  end
  redis.call('ZREM', KEYS[1], value)
end
return changed
