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
local function ensure_epoch(cursor_key)
  if redis.call('HEXISTS', cursor_key, 'epoch') == 0 then
    redis.call('HSET', cursor_key, 'epoch', int(clock('')))
  end
end

-- The fields of a token hash, in the order every reply carries them. `reason` is why it is
-- EXPIRED (TTL, PAID, ABANDONED: `ExpiredReason`); a WAITING token may also have `seen`, its
-- last sight (note_seen.lua), which no reply carries.
local TOKEN_FIELDS = { 'user', 'seq', 'status', 'issued', 'activated', 'expires', 'reason' }

-- Marks a token EXPIRED for `reason` and lets Redis drop it (and the user's pointer to it,
-- unless that already points to a newer token) `retain_ms` later: long enough that a poll of
-- an expired token still answers EXPIRED, short enough that memory stays bounded.
local function retire(token_key, value, user_key, retain_ms, reason)
  redis.call('HSET', token_key, 'status', 'EXPIRED', 'reason', reason)
  redis.call('PEXPIRE', token_key, retain_ms)
  if redis.call('GET', user_key) == value then
    redis.call('PEXPIRE', user_key, retain_ms)
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

-- THE RULE, the only statement of it: a token as every reply shows it. `t` holds its
-- TOKEN_FIELDS as stored (t[2] the stored `seq`); `admitted` and `draw_at` are the cursor's.
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
