-- issue: gives a user one place in line (QueueStore::issue).
-- KEYS: 1 issued counter, 2 cursor hash, 3 waiting list, 4 users hash, 5 the draw's position
--       table, 6 admissions zset
-- ARGV: 1 the line's namespace, 2 user id (16 bytes), 3 the new token's random part (24
--       bytes), 4 now (µs, the caller's), 5 retention of expired tokens (ms)
-- Reply: { created '1'|'0', the token's random part (24 bytes), its arrival `seq` (its value
--          is the two: see "Records" in prelude.lua), user (16 bytes), seq, status, issued,
--          activated, expires, reason, admitted, last, epoch, draw_at, draw_entrants,
--          draw_seed } (missing values nil; the token as every reader sees it: `derive`; then
--          CURSOR_FIELDS). Bytes stay bytes: the codec spells them, not Lua.
--
-- Atomic: Redis runs one script at a time, so concurrent issues for one user see each other
-- and yield one token; `seq` is taken (INCR) only once every check has passed and nothing
-- after it can fail, so a refused issue burns no number and the order is gapless. The new
-- token's value is its random part and its `seq` (see "Records" in prelude.lua): unique by
-- its `seq`, so no value can collide.
if #ARGV[2] ~= 16 or #ARGV[3] ~= 24 then
  return redis.error_reply('ERR issue: a user id of 16 bytes and a random part of 24 expected')
end
local now = tonumber(ARGV[4])
local line = line_of(ARGV[1])
-- The cursor's fields in one read: CURSOR_FIELDS, then the layout and the issue times.
local c = redis.call('HMGET', KEYS[2], 'admitted', 'last', 'epoch', 'draw_at', 'draw_entrants', 'draw_seed', 'layout',
  'imax', 'iback')
check_layout(c[3], c[7])
-- Written with the first issue into an empty namespace: the line's epoch (Redis' clock, read
-- before any write: see `clock`) and layout (see `ensure_epoch`).
local created_line = not c[3]
if created_line then
  c[3] = int(clock(''))
end
-- `t` as `derive` leaves it (its `seq` as shown, its admission derived).
local function reply(created, random, seq, t)
  return { created, random, int(seq), t[1], t[2], t[3], t[4], t[5], t[6], t[7], c[1], c[2], c[3], c[4], c[5], c[6] }
end

local current = tonumber(redis.call('HGET', KEYS[4], ARGV[2]) or '')
if current then
  local t = load(line, current)
  if t then
    local rec
    t, rec = derive(KEYS[5], KEYS[6], c[1], c[4], t)
    -- Mirrors QueueToken::is_live_at: WAITING, or ACTIVE with expires_at > now.
    if t[3] == 'WAITING' or (t[3] == 'ACTIVE' and tonumber(t[6]) > now) then
      return reply('0', t.random, current, t)
    end
    -- The user's ACTIVE token whose time is up: written EXPIRED (TTL) with what was derived
    -- for it, as the expiry sweep would (which then drops it from the list unwritten).
    if t[3] == 'ACTIVE' then
      retire(line, current, t, rec.at, rec.expires, 'TTL', ARGV[5])
    end
  end
end

local seq = redis.call('INCR', KEYS[1])
store_waiting(line, seq, ARGV[3], ARGV[2], now)
redis.call('RPUSH', KEYS[3], int(seq))
redis.call('HSET', KEYS[4], ARGV[2], int(seq))
-- How far issue times ever went back in line order: `imax` the latest issue time so far,
-- `iback` the most a token's time fell behind it (callers' clocks differ). A draw uses it to
-- find its entrants (issued before the opening) by bisecting the line instead of reading
-- every token's time: see draw.rs. One HSET for them and, on a new line, its epoch.
local set = {}
local function put(field, value)
  set[#set + 1] = field
  set[#set + 1] = value
end
if created_line then
  put('epoch', c[3])
  put('layout', LAYOUT)
end
local imax = tonumber(c[8] or '')
if not imax or now > imax then
  put('imax', ARGV[4])
  if not imax then
    put('iback', '0')
  end
elseif now < imax and imax - now > tonumber(c[9] or '0') then
  put('iback', int(imax - now))
end
if #set > 0 then
  redis.call('HSET', KEYS[2], unpack(set))
end
return reply('1', ARGV[3], seq, { ARGV[2], drawn_seq(KEYS[5], c[4], int(seq)), 'WAITING', ARGV[4], false, false, false })
