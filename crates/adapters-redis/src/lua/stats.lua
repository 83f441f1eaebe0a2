-- stats: counts and cursor for an operator, on the store's clock (QueueStore::stats).
-- KEYS: 1 issued counter, 2 cursor hash, 3 active zset (tokens stored ACTIVE by an older
--       version), 4 admissions zset, 5 open records hash
-- ARGV: 1 now (µs; '' = Redis' TIME)
-- Reply: { issued_through, then CURSOR_FIELDS (admitted '0' if none; the others nil if
--        absent), abandoned, active, now }
--
-- Writes nothing.
local now = clock(ARGV[1])
local c = redis.call('HMGET', KEYS[2], unpack(CURSOR_FIELDS))
local abandoned = redis.call('HGET', KEYS[2], 'abandoned') or '0'
-- ACTIVE and unexpired at now: expires_at > now (QueueToken::status_at): those admitted by a
-- record (derived_active), and any stored ACTIVE.
local active = derived_active(KEYS[2], KEYS[4], KEYS[5], now, false)
  + redis.call('ZCOUNT', KEYS[3], '(' .. int(now), '+inf')
return { redis.call('GET', KEYS[1]) or '0', c[1] or '0', c[2], c[3], c[4], c[5], c[6], abandoned, int(active), int(now) }
