-- issue: gives users one place each in line (QueueStore::issue), several issues in one call.
-- KEYS: 1 issued counter, 2 cursor hash, 3 waiting list, 4 users hash, 5 the draw's position
--       table, 6 admissions zset
-- ARGV: 1 the line's namespace, 2 retention of expired tokens (ms), then per issue three:
--       user id (16 bytes), the new token's random part (24 bytes), now (µs, the caller's)
-- Reply: { the cursor's CURSOR_FIELDS (admitted, last, epoch, draw_at, draw_entrants,
--          draw_seed), as read before any write }, then per issue, in ARGV's order:
--          - a new token: { '1', its arrival `seq`, its `seq` as shown (`drawn_seq`) }: the
--            caller knows the rest (the random part and the user it sent, issued = its now);
--          - the user's live token found: { '0', its random part (24 bytes), its arrival `seq`
--            (the value is the two: see "Records" in prelude.lua), then TOKEN_FIELDS as every
--            reader sees it (`derive`): user (16 bytes), seq, status, issued, activated,
--            expires, reason };
--          - { 'E', the error of that issue alone } (not an error reply: a client may fail a
--            whole reply for an error nested in it).
--          Missing values nil. Bytes stay bytes: the codec spells them, not Lua.
--
-- Atomic: Redis runs one script at a time, so concurrent issues for one user see each other
-- and yield one token; the issues of one call are taken in order, each as if it were a call of
-- its own (a user twice in one call: the second finds the first's token). A `seq` is taken
-- only once every check of its issue has passed, and the call writes its new tokens after
-- every issue was taken, so a refused issue burns no number and the order is gapless. The new
-- token's value is its random part and its `seq` (see "Records" in prelude.lua): unique by
-- its `seq`, so no value can collide.
if #ARGV < 5 or (#ARGV - 2) % 3 ~= 0 then
  return redis.error_reply('ERR issue: a namespace, a retention and issues of three arguments expected')
end
local line = line_of(ARGV[1])
local retain_ms = ARGV[2]
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

-- Every user's current token in one read.
local users = { 'HMGET', KEYS[4] }
for i = 3, #ARGV, 3 do
  users[#users + 1] = ARGV[i]
end
local current = redis.call(unpack(users))

local last = tonumber(redis.call('GET', KEYS[1]) or '0')
local seq = last
-- What this call stores, written once every issue was taken.
local new = {} -- user -> { seq, random, now }
local records = {} -- bucket -> { field, record, ... }
local pushed = {}
local mapped = {}
-- How far issue times ever went back in line order (see below).
local imax, iback = tonumber(c[8] or ''), tonumber(c[9] or '0')
local moved = false

-- The user's live token (or nil), retiring their lapsed ACTIVE one as the expiry sweep would.
local function live(user, now, found)
  local t = load(line, found)
  if not t then
    return nil
  end
  local rec
  t, rec = derive(KEYS[5], KEYS[6], c[1], c[4], t)
  -- Mirrors QueueToken::is_live_at: WAITING, or ACTIVE with expires_at > now.
  if t[3] == 'WAITING' or (t[3] == 'ACTIVE' and tonumber(t[6]) > now) then
    return { '0', t.random, int(found), t[1], t[2], t[3], t[4], t[5], t[6], t[7] }
  end
  -- The user's ACTIVE token whose time is up: written EXPIRED (TTL) with what was derived
  -- for it, as the expiry sweep would (which then drops it from the list unwritten).
  if t[3] == 'ACTIVE' then
    retire(line, found, t, rec.at, rec.expires, 'TTL', retain_ms)
  end
  return nil
end

local replies = { { c[1], c[2], c[3], c[4], c[5], c[6] } }
for i = 3, #ARGV, 3 do
  local user, random, now_arg = ARGV[i], ARGV[i + 1], ARGV[i + 2]
  local now = tonumber(now_arg)
  local answer
  if #user ~= 16 or #random ~= 24 or not now then
    answer = { 'E', 'issue: a user id of 16 bytes, a random part of 24 and a time expected' }
  elseif new[user] then
    local n = new[user]
    answer = { '0', n[2], int(n[1]), user, drawn_seq(KEYS[5], c[4], int(n[1])), 'WAITING', n[3], false, false, false }
  else
    local found = tonumber(current[(i - 3) / 3 + 1] or '')
    if found then
      local ok, result = pcall(live, user, now, found)
      if not ok then
        answer = { 'E', tostring(result) }
      else
        answer = result
      end
    end
    if not answer then
      seq = seq + 1
      new[user] = { seq, random, now_arg }
      local bucket, field = slot_of(line, seq)
      local b = records[bucket]
      if not b then
        b = {}
        records[bucket] = b
      end
      b[#b + 1] = field
      b[#b + 1] = pack_record(random, user, now)
      pushed[#pushed + 1] = int(seq)
      mapped[#mapped + 1] = user
      mapped[#mapped + 1] = int(seq)
      -- `imax` the latest issue time so far, `iback` the most a token's time fell behind it
      -- (callers' clocks differ). A draw uses it to find its entrants (issued before the
      -- opening) by bisecting the line instead of reading every token's time: see draw.rs.
      if not imax or now > imax then
        if not imax then
          iback = 0
        end
        imax, moved = now, true
      elseif imax - now > iback then
        iback, moved = imax - now, true
      end
      answer = { '1', int(seq), drawn_seq(KEYS[5], c[4], int(seq)) }
    end
  end
  replies[#replies + 1] = answer
end

if seq > last then
  redis.call('SET', KEYS[1], int(seq))
  for bucket, fields in pairs(records) do
    redis.call('HSET', bucket, unpack(fields))
  end
  redis.call('RPUSH', KEYS[3], unpack(pushed))
  redis.call('HSET', KEYS[4], unpack(mapped))
end
-- One HSET for the issue times and, on a new line, its epoch and layout.
if created_line and moved then
  redis.call('HSET', KEYS[2], 'epoch', c[3], 'layout', LAYOUT, 'imax', int(imax), 'iback', int(iback))
elseif created_line then
  redis.call('HSET', KEYS[2], 'epoch', c[3], 'layout', LAYOUT)
elseif moved then
  redis.call('HSET', KEYS[2], 'imax', int(imax), 'iback', int(iback))
end
return replies
