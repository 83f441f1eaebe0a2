-- note_seen: the buyers of these tokens were seen at `at` (QueueStore::note_seen).
-- KEYS: 1 cursor hash, 2 the draw's position table, 3 admissions zset
-- ARGV: 1 the line's namespace, 2 at (µs), then per token its arrival `seq` and its random
--       part (24 bytes)
-- Reply: how many tokens' last sight moved
--
-- One script for the whole batch. A token's last sight only moves forward (max with what is
-- stored); unknown tokens and tokens no longer WAITING as every reader sees them (`derive`:
-- one admitted by a record is ACTIVE though stored WAITING) are left alone (nothing is
-- created).
local line = line_of(ARGV[1])
local at = tonumber(ARGV[2])
local c = redis.call('HMGET', KEYS[1], 'admitted', 'draw_at')
local moved = 0
for i = 3, #ARGV - 1, 2 do
  local seq = tonumber(ARGV[i])
  local t = seq and load(line, seq, ARGV[i + 1])
  if t and t[3] == 'WAITING' then
    t = derive(KEYS[2], KEYS[3], c[1], c[2], t)
  end
  if t and t[3] == 'WAITING' and (not t.seen or t.seen < at) then
    store_seen(line, seq, t, at)
    moved = moved + 1
  end
end
return moved
