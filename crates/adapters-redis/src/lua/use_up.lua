-- use_up: the token that paid is spent (QueueStore::use_up).
-- KEYS: 1 the token's hash, 2 active zset (tokens stored ACTIVE by an older version), 3 cursor
--       hash, 4 the draw's position table, 5 admissions zset, 6 open records hash
-- ARGV: 1 token value, 2 payment time (µs), 3 user key prefix, 4 retention (ms)
-- Reply: 1 if it was ACTIVE and changed, else 0 (idempotent)
--
-- Touches this token only: a WAITING token of the same user is another hash and stays in line.
-- A token admitted by a record (`derive`) is accepted while unexpired at the payment's time,
-- once: it is written EXPIRED (PAID) with the derived activated and expires = at, so it is
-- stored WAITING no more, and a second call, or the sweep, finds it spent. Its record, while
-- open, counts one active token fewer (the cap's count, see `derived_active`).
local t = redis.call('HMGET', KEYS[1], unpack(TOKEN_FIELDS))
if t[3] == 'ACTIVE' then
  redis.call('HSET', KEYS[1], 'expires', ARGV[2])
  redis.call('ZREM', KEYS[2], ARGV[1])
  retire(KEYS[1], ARGV[1], ARGV[3] .. (t[1] or ''), ARGV[4], 'PAID')
  return 1
end
if t[3] ~= 'WAITING' then
  return 0
end
local c = redis.call('HMGET', KEYS[3], 'admitted', 'draw_at')
local rec
t, rec = derive(KEYS[4], KEYS[5], c[1], c[2], t)
if not rec or tonumber(ARGV[2]) >= rec.expires then
  return 0
end
redis.call('HSET', KEYS[1], 'activated', int(rec.at), 'expires', ARGV[2])
retire(KEYS[1], ARGV[1], ARGV[3] .. (t[1] or ''), ARGV[4], 'PAID')
local through = int(rec.through)
if redis.call('HEXISTS', KEYS[6], through) == 1 then
  redis.call('HINCRBY', KEYS[6], through, -1)
  redis.call('HINCRBY', KEYS[3], 'live', -1)
end
return 1
