-- Prepended to every script of this crate.
--
-- Times are integers of microseconds since the Unix epoch (the domain keeps µs). They stay
-- below 2^53, so Lua's doubles hold them exactly; `int` formats them back without the
-- exponent notation that `tostring` (14 significant digits) would use, and every number
-- handed to `redis.call` goes through it, so no conversion ever rounds a time or a `seq`.
local function int(x)
  return string.format('%d', x)
end

-- The store's clock: ARGV "now" is the injected clock's time in tests, or '' in production,
-- where Redis' own `TIME` is read inside the script, so every instance sharing this Redis
-- admits and expires on one clock whatever its own says. Redis 7 replicates a script's
-- effects, not the script, which is what allows a non-deterministic command here; on Redis
-- 5 and 6 `replicate_commands` asks for that mode (a no-op on 7). It must come before any
-- write, which is why scripts read the clock first.
local function clock(arg)
  if arg ~= '' then
    return tonumber(arg)
  end
  if redis.replicate_commands then
    redis.replicate_commands()
  end
  local t = redis.call('TIME')
  return tonumber(t[1]) * 1000000 + tonumber(t[2])
end

-- The fields of the cursor hash, in the order every reply carries them: admitted_through,
-- last_admission_at, the line's epoch (see `epoch` below) and the draw's record (when, how many
-- entrants, the seed: `QueueCursor::draw`; absent until a draw finished, see draw_finish.lua).
-- (So in a script's HMGET of them, c[4] is `draw_at`.)
local CURSOR_FIELDS = { 'admitted', 'last', 'epoch', 'draw_at', 'draw_entrants', 'draw_seed' }

-- The epoch of the line: Redis' clock (µs) when the line was created, written by the first
-- issue into an empty namespace. A Redis that lost its data (restarted without persistence,
-- flushed, failed over to a replica that had not seen the line) has no epoch, or a new one,
-- so a cache that kept tokens of the old line knows they are gone (`QueueCursor::epoch`).
-- Reads Redis' `TIME`, so a script calls it before any write (see `clock`).
--
-- The line's `layout` is written with it: how its tokens are stored ("Records" below). A line
-- an earlier version wrote (a key per token, no `layout`) is refused, not misread.
local LAYOUT = '2'

local function check_layout(epoch, layout)
  if epoch and layout ~= LAYOUT then
    error('this line was written by an earlier version (a key per token); let it drain or delete its keys')
  end
end

local function ensure_epoch(cursor_key)
  local c = redis.call('HMGET', cursor_key, 'epoch', 'layout')
  check_layout(c[1], c[2])
  if not c[1] then
    redis.call('HSET', cursor_key, 'epoch', int(clock('')), 'layout', LAYOUT)
  end
end

-- # Records: where a token is stored
--
-- No token has a key of its own while it waits (keys.rs). A token's value is 24 random bytes
-- and its arrival `seq` (8 bytes big-endian), so its value names its record:
--
-- - stored WAITING: field `seq % 128` of the bucket `{ns}:r:<floor(seq / 128)>` (a hash,
--   which Redis keeps as a compact listpack), the packed RECORD
--   random (24 bytes) .. user (16 bytes) .. issued (8 bytes, µs) [.. seen (8 bytes, µs)];
-- - stored EXPIRED: the string `{ns}:x:<seq>`, the packed EXPIRED record
--   random (24) .. user (16) .. issued (8) .. activated (8) .. expires (8) .. reason (1 byte:
--   T, P or A for TTL, PAID, ABANDONED), kept `retain_ms` and then dropped by Redis, so a
--   poll of an expired token still answers EXPIRED for a while and memory stays bounded;
-- - the users hash `{ns}:users` maps a user's 16 bytes to the `seq` of their token while it
--   is stored WAITING (it is dropped when the token is retired).
--
-- Times are 8 bytes big-endian unsigned (0: absent); `struct` packs the doubles exactly, as
-- they stay below 2^53.
local BUCKET = 128
local REASONS = { T = 'TTL', P = 'PAID', A = 'ABANDONED' }
local REASON_BYTE = { TTL = 'T', PAID = 'P', ABANDONED = 'A' }

-- The keys of a line's records from its namespace `{ns}` (an ARGV of the scripts that read or
-- write records): every one shares the line's hash tag, so its slot.
local function line_of(ns)
  return { r = ns .. ':r:', x = ns .. ':x:', users = ns .. ':users' }
end

-- The bucket key and field of arrival `seq` (a number).
local function slot_of(line, seq)
  return line.r .. int(math.floor(seq / BUCKET)), int(seq % BUCKET)
end

local function time_field(x)
  if x == 0 then
    return false
  end
  return int(x)
end

-- The token of arrival `seq` (a number) as stored, or nil: a table holding, as every reply
-- carries them (TOKEN_FIELDS), t[1] user (its 16 bytes: the codec reads them), t[2] seq,
-- t[3] status, t[4] issued, t[5] activated, t[6] expires, t[7] reason (absent values false),
-- and t.random, t.seen (a number, or nil). With `random` given, a record holding other random
-- bytes is no match (the value does not name this token).
local function load(line, seq, random)
  local bucket, field = slot_of(line, seq)
  local raw = redis.call('HGET', bucket, field)
  local t
  if raw then
    t = { string.sub(raw, 25, 40), int(seq), 'WAITING', int(struct.unpack('>I8', raw, 41)), false, false, false }
    if #raw >= 56 then
      t.seen = struct.unpack('>I8', raw, 49)
    end
  else
    raw = redis.call('GET', line.x .. int(seq))
    if not raw then
      return nil
    end
    local issued, activated, expires = struct.unpack('>I8>I8>I8', raw, 41)
    t = { string.sub(raw, 25, 40), int(seq), 'EXPIRED', int(issued), time_field(activated), time_field(expires),
      REASONS[string.sub(raw, 65, 65)] or false }
  end
  t.random = string.sub(raw, 1, 24)
  if random and t.random ~= random then
    return nil
  end
  return t
end

-- A WAITING record: random, user (16 bytes each as stored), issued and seen (numbers; seen
-- may be nil).
local function pack_record(random, user, issued, seen)
  local r = random .. user .. struct.pack('>I8', issued)
  if seen then
    r = r .. struct.pack('>I8', seen)
  end
  return r
end

-- Stores a new WAITING token of arrival `seq`.
local function store_waiting(line, seq, random, user, issued)
  local bucket, field = slot_of(line, seq)
  redis.call('HSET', bucket, field, pack_record(random, user, issued))
end

-- Moves a WAITING token's last sight to `seen` (it only moves forward: the caller checks).
local function store_seen(line, seq, t, seen)
  local bucket, field = slot_of(line, seq)
  redis.call('HSET', bucket, field, pack_record(t.random, t[1], tonumber(t[4]), seen))
end

-- Writes the token `t` (as `load` gave it, of arrival `seq`) EXPIRED for `reason` (TTL, PAID,
-- ABANDONED: `ExpiredReason`) with `activated` and `expires` (numbers or strings, nil for
-- none), kept `retain_ms`: its record leaves its bucket, and its user's entry goes unless it
-- names another token.
local function retire(line, seq, t, activated, expires, reason, retain_ms)
  local bucket, field = slot_of(line, seq)
  redis.call('HDEL', bucket, field)
  local packed = t.random .. t[1] .. struct.pack('>I8>I8>I8', tonumber(t[4]), tonumber(activated or 0),
    tonumber(expires or 0)) .. REASON_BYTE[reason]
  redis.call('SET', line.x .. int(seq), packed, 'PX', retain_ms)
  if redis.call('HGET', line.users, t[1]) == int(seq) then
    redis.call('HDEL', line.users, t[1])
  end
end

-- Whether a draw is claimed and not finished (draw_claim.lua): admission waits for it.
local function drawing(cursor_key)
  local c = redis.call('HMGET', cursor_key, 'draw_owner', 'draw_at')
  return c[1] and not c[2]
end

-- A token's `seq` as the line shows it. A draw (draw.rs) writes no token: it keeps the drawn
-- order in a position table, a string of 4 bytes big-endian per arrival `seq` s, at byte
-- 4 * (s - 1) the token's drawn `seq` (0, or past the end: unchanged, as for the tokens issued
-- after the draw's claim). `seq` is the stored (arrival) one, `draw_at` the cursor's: until the
-- draw is recorded the table is not in force and the stored `seq` is shown (the domain shows
-- no position then). Every reply that carries a token's `seq` goes through this.
local function drawn_seq(table_key, draw_at, seq)
  if not draw_at or not seq then
    return seq
  end
  local s = tonumber(seq)
  if not s or s < 1 then
    return seq
  end
  local bytes = redis.call('GETRANGE', table_key, int(4 * (s - 1)), int(4 * s - 1))
  if #bytes ~= 4 then
    return seq
  end
  local drawn = struct.unpack('>I4', bytes)
  if drawn == 0 then
    return seq
  end
  return int(drawn)
end

-- # Admission records: what is derived, what is written
--
-- An admission writes no token. It moves the cursor (`admitted`) by n and, when it admitted
-- any, records itself once in the sorted set `{ns}:admissions`, scored by `through`, member
-- 'through:after:at:expires': the tokens at positions after + 1 .. through (as the line shows
-- them: `drawn_seq`) that were WAITING became ACTIVE at `at` until `expires`. Such a token
-- stays stored WAITING, and stays in the WAITING list (`{ns}:waiting` holds every token not
-- yet swept, in position order; the cursor's `swept` positions have left its head), until
-- expire.lua writes it EXPIRED (TTL) once its record expired. A payment (use_up.lua), an
-- abandonment (admit.lua) or a lapsed token's new issue (issue.lua) write a token EXPIRED
-- explicitly, with its activated/expires, and the sweep drops those from the list unwritten.

-- The admission record of the line covering position `pos`, or nil: the one of lowest
-- `through` >= pos, if its `after` < pos. Fields are numbers.
local function record_at(admissions_key, pos)
  local r = redis.call('ZRANGEBYSCORE', admissions_key, int(pos), '+inf', 'LIMIT', 0, 1)[1]
  if not r then
    return nil
  end
  local through, after, at, expires = string.match(r, '^(%d+):(%d+):(%d+):(%d+)$')
  if not through or tonumber(after) >= pos then
    return nil
  end
  return { through = tonumber(through), after = tonumber(after), at = tonumber(at), expires = tonumber(expires) }
end

-- THE RULE, the only statement of it: a token as every reply shows it. `t` is the token as
-- `load` gave it (t[2] the stored, arrival `seq`); `admitted` and `draw_at` are the cursor's.
-- Sets t[2] to the position the line shows (`drawn_seq`), and when the token is stored WAITING
-- and that position is <= admitted, it is the admitted token of the record covering it:
-- status ACTIVE, activated = the record's `at`, expires = its `expires` (the domain reads an
-- ACTIVE token as EXPIRED, reason TTL, from `expires` on: `QueueToken::status_at`, exactly as
-- it reads one the sweep has not reached yet). Returns t and that record (nil when the token is
-- not derived ACTIVE). Mirrors the domain's admission (`QueueStore::admit`): every WAITING
-- token at or below `admitted_through` was activated by the tick that moved past it.
local function derive(drawn_key, admissions_key, admitted, draw_at, t)
  t[2] = drawn_seq(drawn_key, draw_at, t[2])
  if t[3] ~= 'WAITING' then
    return t, nil
  end
  local pos = tonumber(t[2] or '')
  if not pos or pos > tonumber(admitted or '0') then
    return t, nil
  end
  local rec = record_at(admissions_key, pos)
  if not rec then
    error('a WAITING token at position ' .. int(pos) .. ' behind the cursor has no admission record')
  end
  t[3], t[5], t[6] = 'ACTIVE', int(rec.at), int(rec.expires)
  return t, rec
end

-- How many tokens admitted by a record (not written) are ACTIVE and unexpired at `now`: the
-- open records' counts (`{ns}:open`, field `through`: the tokens the record admitted minus
-- those used up since; the cursor's `live` their sum) minus those of the records expired at
-- `now` (expires <= now: `QueueToken::status_at`). Records close in `through` order (the
-- cursor's `closed`: the `through` of the last one closed), so the walk touches only the
-- records expired since the last close: O(1) amortised, never O(tokens). With `close` the
-- expired ones are closed (a script that writes: admit, expire); without, it only counts.
-- A record that expires before an older one (the TTL was shortened) waits for that one to
-- close: counted a little longer, so the cap admits fewer, never more.
local function derived_active(cursor_key, admissions_key, open_key, now, close)
  local c = redis.call('HMGET', cursor_key, 'live', 'closed')
  local live, closed = tonumber(c[1] or '0'), tonumber(c[2] or '0')
  local from = closed
  while true do
    local r = redis.call('ZRANGEBYSCORE', admissions_key, '(' .. int(from), '+inf', 'LIMIT', 0, 1)[1]
    if not r then
      break
    end
    local through, expires = string.match(r, '^(%d+):%d+:%d+:(%d+)$')
    if not through or tonumber(expires) > now then
      break
    end
    live = live - tonumber(redis.call('HGET', open_key, through) or '0')
    from = tonumber(through)
    if close then
      redis.call('HDEL', open_key, through)
    end
  end
  if close and from ~= closed then
    redis.call('HSET', cursor_key, 'live', int(live), 'closed', int(from))
  end
  return live
end

-- How many positions have left the head of the WAITING list (swept, or popped by a version
-- that popped at admission: then `swept` is absent and every admitted position has left).
-- Position p is at list index p - swept - 1.
local function swept_of(swept, admitted)
  return tonumber(swept or admitted or '0')
end
