-- draw_read: a slice of the WAITING list with each token's issue time, for a draw to find
-- its entrants (tokens issued before the opening). Writes nothing.
-- KEYS: 1 waiting list
-- ARGV: 1 token key prefix, 2 first index, 3 last index (0-based, inclusive)
-- Reply: { value, issued, value, issued, ... }
local values = redis.call('LRANGE', KEYS[1], ARGV[2], ARGV[3])
local out = {}
for i, value in ipairs(values) do
  out[2 * i - 1] = value
  out[2 * i] = redis.call('HGET', ARGV[1] .. value, 'issued') or '0'
end
return out
