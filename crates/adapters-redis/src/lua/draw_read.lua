-- draw_read: a slice of the WAITING list and, when asked, which of its tokens are entrants of
-- a draw (issued before the opening). Writes nothing.
-- KEYS: 1 waiting list
-- ARGV: 1 token key prefix, 2 first index, 3 last index (0-based, inclusive), 4 opens_at (µs),
--       5 '1' to classify, '0' not to (the caller knows from bisecting, see draw_issued.lua)
-- Reply: { the values joined by spaces, a string of '1' (an entrant) or '0' per value, empty
--        unless asked }
--
-- Two strings rather than two values per token: a million tokens cross the wire in a few
-- hundred replies the client splits at once (values never hold a space).
local values = redis.call('LRANGE', KEYS[1], ARGV[2], ARGV[3])
local flags = {}
if ARGV[5] == '1' then
  local opens = tonumber(ARGV[4])
  for i, value in ipairs(values) do
    local issued = tonumber(redis.call('HGET', ARGV[1] .. value, 'issued') or '0')
    flags[i] = issued < opens and '1' or '0'
  end
end
return { table.concat(values, ' '), table.concat(flags) }
