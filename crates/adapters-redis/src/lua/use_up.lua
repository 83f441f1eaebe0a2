-- use_up: the token that paid is spent (QueueStore::use_up).
-- KEYS: 1 cursor hash, 2 the draw's position table, 3 admissions zset, 4 open records hash
-- ARGV: 1 the line's namespace, 2 the token's arrival `seq`, 3 its random part (24 bytes),
--       4 payment time (µs), 5 retention (ms)
-- Reply: 1 if it was ACTIVE and changed, else 0 (idempotent)
--
-- Touches this token only: a WAITING token of the same user is another record and stays in
-- line. A token admitted by a record (`derive`) is accepted while unexpired at the payment's
-- time, once: it is written EXPIRED (PAID) with the derived activated and expires = at, so it
-- is stored WAITING no more, and a second call, or the sweep, finds it spent. Its record,
-- while open, counts one active token fewer (the cap's count, see `derived_active`).
local line = line_of(ARGV[1])
local seq = tonumber(ARGV[2])
local t = load(line, seq, ARGV[3])
if not t or t[3] ~= 'WAITING' then
  return 0
end
local c = redis.call('HMGET', KEYS[1], 'admitted', 'draw_at')
local rec
t, rec = derive(KEYS[2], KEYS[3], c[1], c[2], t)
if not rec or tonumber(ARGV[4]) >= rec.expires then
  return 0
end
retire(line, seq, t, rec.at, ARGV[4], 'PAID', ARGV[5])
local through = int(rec.through)
if redis.call('HEXISTS', KEYS[4], through) == 1 then
  redis.call('HINCRBY', KEYS[4], through, -1)
  redis.call('HINCRBY', KEYS[1], 'live', -1)
end
return 1
