-- stats: counts and cursor for an operator, on the store's clock (QueueStore::stats).
-- KEYS: 1 issued counter, 2 cursor hash, 3 admissions zset, 4 open records hash
-- ARGV: 1 now (µs; '' = Redis' TIME)
-- Reply: { issued_through, then CURSOR_FIELDS (admitted '0' if none; the others nil if
--        absent), abandoned, active, now }
--
-- Writes nothing.
local now = clock(ARGV[1])
local c = redis.call('HMGET', KEYS[2], unpack(CURSOR_FIELDS))
local abandoned = redis.call('HGET', KEYS[2], 'abandoned') or '0'
-- ACTIVE and unexpired at now: expires_at > now (QueueToken::status_at), every one admitted
-- by a record (derived_active).
local active = derived_active(KEYS[2], KEYS[3], KEYS[4], now, false)
return { redis.call('GET', KEYS[1]) or '0', c[1] or '0', c[2], c[3], c[4], c[5], c[6], abandoned, int(active), int(now) }
