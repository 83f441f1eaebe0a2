-- draw_chunk: one chunk of a draw: the `seq`s of the tokens taking positions first, first + 1,
-- ... join the staging list (the WAITING list in its new order) in that order, and the
-- position table gets the drawn `seq`s of as many tokens, those of stored `seq` base + first - 1, ... (the claimed
-- tokens in their list order before the draw; `base` from draw_claim.lua). No token is written:
-- a reader maps a token's stored `seq` through the table (drawn_seq in prelude.lua) once the
-- draw is recorded, as PostgreSQL maps arrivals through `queue_draw_positions`.
-- KEYS: 1 cursor hash, 2 staging list, 3 the draw's position table
-- ARGV: 1 now (µs; '' = Redis' TIME), 2 owner id, 3 lease (µs), 4 first (the 1-based position
--       of the first value), 5 the table's slice: 4 bytes big-endian per value, the drawn
--       `seq` of the token whose stored `seq` is base + first - 1, then the next, ...,
--       6... the tokens' stored `seq`s in drawn order (Redis makes them Lua strings in C:
--       cheaper than splitting one joined argument)
-- Reply: { 'ok', staged } (the staging list's length after it); { 'drawn' } when the draw is
--        recorded already; { 'lost' } when another caller owns the draw now
--
-- With no values it only renews the lease (the owner does so while it reads the line).
-- Idempotent: positions already staged (by this owner, or by the one it took over from) are
-- skipped, and so is as much of the table's slice, so a chunk repeated after a lost reply or a
-- takeover writes nothing twice. The table is thus written for the first `staged` stored
-- `seq`s whenever the staging list holds `staged` values (both in this one script), and
-- draw_finish.lua checks its length. The order is the seed's, so an owner that took over
-- writes the very bytes the first would have. It renews the owner's lease.
local now = clock(ARGV[1])
local c = redis.call('HMGET', KEYS[1], 'draw_owner', 'draw_at', 'draw_base')
if c[2] then
  return { 'drawn' }
end
if c[1] ~= ARGV[2] then
  return { 'lost' }
end
local count = #ARGV - 5
if #ARGV[5] ~= 4 * count then
  return redis.error_reply('ERR draw chunk of ' .. int(count) .. ' values with ' .. int(#ARGV[5]) .. ' table bytes')
end
local first = tonumber(ARGV[4])
local staged = redis.call('LLEN', KEYS[2])
local skip = staged - (first - 1)
if skip < 0 then
  return redis.error_reply('ERR draw chunk at ' .. int(first) .. ' but only ' .. int(staged) .. ' staged')
end
if skip < count then
  if not c[3] then
    return redis.error_reply('ERR a draw claim without its base seq')
  end
  -- Byte 4 * (s - 1) is stored seq s's: s = base + first - 1 + skip for the first one written.
  local offset = 4 * (tonumber(c[3]) + first - 2 + skip)
  redis.call('SETRANGE', KEYS[3], int(offset), string.sub(ARGV[5], 4 * skip + 1))
end
-- unpack is bounded by Lua's C stack (8000 values): push in slices.
local i = 6 + skip
while i <= #ARGV do
  local j = math.min(i + 999, #ARGV)
  redis.call('RPUSH', KEYS[2], unpack(ARGV, i, j))
  i = j + 1
end
redis.call('HSET', KEYS[1], 'draw_lease', int(now + tonumber(ARGV[3])))
return { 'ok', int(redis.call('LLEN', KEYS[2])) }
