-- issue: gives a user one place in line (QueueStore::issue).
-- KEYS: 1 issued counter, 2 cursor hash, 3 waiting list, 4 active zset, 5 the user's pointer,
--       6 the new token's hash, 7 the draw's position table, 8 admissions zset
-- ARGV: 1 token key prefix, 2 user id, 3 new token value, 4 now (µs, the caller's),
--       5 retention of expired tokens (ms)
-- Reply: { created '1'|'0', value, user, seq, status, issued, activated, expires, reason,
--          admitted, last, epoch, draw_at, draw_entrants, draw_seed } (missing values nil;
--          see TOKEN_FIELDS and CURSOR_FIELDS; the token as every reader sees it: `derive`)
--
-- Atomic: Redis runs one script at a time, so concurrent issues for one user see each other
-- and yield one token; `seq` is taken (INCR) only once every check has passed and nothing
-- after it can fail, so a refused issue burns no number and the order is gapless.
local now = tonumber(ARGV[4])
-- The first issue into an empty namespace creates the line (before any other write).
ensure_epoch(KEYS[2])

local c = redis.call('HMGET', KEYS[2], unpack(CURSOR_FIELDS))
-- `t` as `derive` leaves it (its `seq` as shown, its admission derived).
local function reply(created, value, t)
  return { created, value, t[1], t[2], t[3], t[4], t[5], t[6], t[7], c[1], c[2], c[3], c[4], c[5], c[6] }
end

local current = redis.call('GET', KEYS[5])
local stale, stale_derived = nil, nil
if current then
  local key = ARGV[1] .. current
  local t, rec = derive(KEYS[7], KEYS[8], c[1], c[4], redis.call('HMGET', key, unpack(TOKEN_FIELDS)))
  -- Mirrors QueueToken::is_live_at: WAITING, or ACTIVE with expires_at > now.
  if t[3] == 'WAITING' or (t[3] == 'ACTIVE' and tonumber(t[6]) > now) then
    return reply('0', current, t)
  end
  if t[3] == 'ACTIVE' then
    stale, stale_derived = key, rec
  end
end

-- 256 random bits never collide; if they ever did, refuse before writing anything.
if redis.call('EXISTS', KEYS[6]) == 1 then
  return redis.error_reply('ERR token value already stored')
end

-- The user's ACTIVE token whose time is up: mark it as the expiry sweep would.
-- One admitted by a record is written with what was derived for it (the sweep then drops it
-- from the list unwritten); one stored ACTIVE (an older version's) leaves the zset.
if stale then
  if stale_derived then
    redis.call('HSET', stale, 'activated', int(stale_derived.at), 'expires', int(stale_derived.expires))
  else
    redis.call('ZREM', KEYS[4], current)
  end
  retire(stale, current, KEYS[5], ARGV[5], 'TTL')
end

local seq = int(redis.call('INCR', KEYS[1]))
redis.call('HSET', KEYS[6], 'user', ARGV[2], 'seq', seq, 'status', 'WAITING', 'issued', ARGV[4])
redis.call('RPUSH', KEYS[3], ARGV[3])
-- How far issue times ever went back in line order: `imax` the latest issue time so far,
-- `iback` the most a token's time fell behind it (callers' clocks differ). A draw uses it to
-- find its entrants (issued before the opening) by bisecting the line instead of reading
-- every token's time: see draw.rs.
local imax = redis.call('HGET', KEYS[2], 'imax')
if not imax or now > tonumber(imax) then
  redis.call('HSET', KEYS[2], 'imax', ARGV[4])
  if not imax then
    redis.call('HSET', KEYS[2], 'iback', '0')
  end
elseif now < tonumber(imax) then
  local back = tonumber(imax) - now
  if back > tonumber(redis.call('HGET', KEYS[2], 'iback') or '0') then
    redis.call('HSET', KEYS[2], 'iback', int(back))
  end
end
-- SET also drops any TTL the pointer had from the user's expired token.
redis.call('SET', KEYS[5], ARGV[3])
return reply('1', ARGV[3], { ARGV[2], drawn_seq(KEYS[7], c[4], seq), 'WAITING', ARGV[4], false, false, false })
