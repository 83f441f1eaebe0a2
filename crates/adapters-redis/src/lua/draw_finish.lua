-- draw_finish: the last step of a draw: records it and puts the drawn order in force.
-- KEYS: 1 cursor hash, 2 waiting list, 3 staging list, 4 the draw's position table
-- ARGV: 1 owner id, 2 entrants (P)
-- Reply: { 'fresh', at, entrants, seed } when this call recorded the draw; { 'drawn', at,
--        entrants, seed } when it was recorded already; { 'lost' } when another caller owns it
--
-- Atomic: the tokens issued since the claim (the WAITING list past the claimed length; their
-- `seq`, taken by INCR, already follows the claimed ones, past the end of the position table,
-- so they keep it) are appended to the staging list, which then replaces the WAITING list,
-- and the record is written, in one step: a reader sees the line before the draw or after
-- it. The record puts the position table in force (drawn_seq), so it must be whole: the
-- chunks write it together with the staging list, from its start, and it ends at the last
-- claimed token's entry.
local c = redis.call('HMGET', KEYS[1], 'draw_owner', 'draw_at', 'draw_entrants', 'draw_seed', 'draw_len',
  'draw_claim_at', 'draw_claim_seed', 'draw_base')
if c[2] then
  return { 'drawn', c[2], c[3], c[4] }
end
if c[1] ~= ARGV[1] then
  return { 'lost' }
end
local length = tonumber(c[5])
local staged = redis.call('LLEN', KEYS[3])
if staged ~= length then
  return redis.error_reply('ERR draw finished with ' .. int(staged) .. ' of ' .. int(length) .. ' staged')
end
local table_len = redis.call('STRLEN', KEYS[4])
local want = 4 * (tonumber(c[8]) + length - 1)
if table_len ~= want then
  return redis.error_reply('ERR draw finished with a position table of ' .. int(table_len) .. ' bytes, not '
    .. int(want))
end
local tail = redis.call('LRANGE', KEYS[2], length, -1)
local i = 1
while i <= #tail do
  local j = math.min(i + 999, #tail)
  redis.call('RPUSH', KEYS[3], unpack(tail, i, j))
  i = j + 1
end
redis.call('RENAME', KEYS[3], KEYS[2])
redis.call('HSET', KEYS[1], 'draw_at', c[6], 'draw_entrants', ARGV[2], 'draw_seed', c[7])
redis.call('HDEL', KEYS[1], 'draw_owner', 'draw_lease', 'draw_claim_at', 'draw_opens', 'draw_claim_seed', 'draw_len',
  'draw_base')
return { 'fresh', c[6], ARGV[2], c[7] }
