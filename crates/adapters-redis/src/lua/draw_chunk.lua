-- draw_chunk: one chunk of a draw: the tokens taking positions first, first + 1, ... get
-- that `seq`, and join the staging list (the WAITING list in its new order) in that order.
-- KEYS: 1 cursor hash, 2 staging list
-- ARGV: 1 now (µs; '' = Redis' TIME), 2 owner id, 3 lease (µs), 4 token key prefix,
--       5 first (the 1-based position of the first value), 6... the values in drawn order
--       (Redis makes them Lua strings in C: cheaper than splitting one joined argument)
-- Reply: { 'ok', staged } (the staging list's length after it); { 'drawn' } when the draw is
--        recorded already; { 'lost' } when another caller owns the draw now
--
-- With no values it only renews the lease (the owner does so while it reads the line).
-- Idempotent: positions already staged (by this owner, or by the one it took over from) are
-- skipped, so a chunk repeated after a lost reply or a takeover writes nothing twice. It
-- renews the owner's lease.
local now = clock(ARGV[1])
local c = redis.call('HMGET', KEYS[1], 'draw_owner', 'draw_at')
if c[2] then
  return { 'drawn' }
end
if c[1] ~= ARGV[2] then
  return { 'lost' }
end
local first = tonumber(ARGV[5])
local staged = redis.call('LLEN', KEYS[2])
local skip = staged - (first - 1)
if skip < 0 then
  return redis.error_reply('ERR draw chunk at ' .. int(first) .. ' but only ' .. int(staged) .. ' staged')
end
local prefix = ARGV[4]
for i = 6 + skip, #ARGV do
  redis.call('HSET', prefix .. ARGV[i], 'seq', int(first + i - 6))
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
