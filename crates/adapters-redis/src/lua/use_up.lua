-- use_up: the token that paid is spent (QueueStore::use_up).
-- KEYS: 1 the token's hash, 2 active zset
-- ARGV: 1 token value, 2 payment time (µs), 3 user key prefix, 4 retention (ms)
-- Reply: 1 if it was ACTIVE and changed, else 0 (idempotent)
--
-- Touches this token only: a WAITING token of the same user is another hash and stays in line.
local t = redis.call('HMGET', KEYS[1], 'status', 'user')
if t[1] ~= 'ACTIVE' then
  return 0
end
redis.call('HSET', KEYS[1], 'expires', ARGV[2])
redis.call('ZREM', KEYS[2], ARGV[1])
retire(KEYS[1], ARGV[1], ARGV[3] .. t[2], ARGV[4], 'PAID')
return 1
