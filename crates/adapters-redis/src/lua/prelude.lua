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
