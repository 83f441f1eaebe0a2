-- draw_issued: the issue time of the WAITING token at a list index, for a draw bisecting the
-- line. Writes nothing.
-- KEYS: 1 waiting list
-- ARGV: 1 token key prefix, 2 the index (0-based)
-- Reply: the time (µs) as a string; nil when the index is past the end
local value = redis.call('LINDEX', KEYS[1], ARGV[2])
if not value then
  return false
end
return redis.call('HGET', ARGV[1] .. value, 'issued') or '0'
