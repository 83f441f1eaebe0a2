-- draw_issued: the issue time of the WAITING token at a list index, for a draw bisecting the
-- line. Writes nothing.
-- KEYS: 1 waiting list
-- ARGV: 1 the line's namespace, 2 the index (0-based)
-- Reply: the time (µs) as a string; nil when the index is past the end
local seq = tonumber(redis.call('LINDEX', KEYS[1], ARGV[2]) or '')
if not seq then
  return false
end
local t = load(line_of(ARGV[1]), seq)
return t and t[4] or '0'
