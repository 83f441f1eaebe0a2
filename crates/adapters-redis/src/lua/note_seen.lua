-- note_seen: the buyers of these tokens were seen at `at` (QueueStore::note_seen).
-- KEYS: 1 cursor hash, 2 the draw's position table, 3 admissions zset, 4... the tokens'
--       hashes (all of this line)
-- ARGV: 1 at (µs)
-- Reply: how many tokens' last sight moved
--
-- One script for the whole batch. A token's last sight only moves forward (max with what is
-- stored); unknown tokens and tokens no longer WAITING as every reader sees them (`derive`:
-- one admitted by a record is ACTIVE though stored WAITING) are left alone (no key is
-- created).
local at = tonumber(ARGV[1])
local c = redis.call('HMGET', KEYS[1], 'admitted', 'draw_at')
local moved = 0
for i = 4, #KEYS do
  local key = KEYS[i]
  local t = redis.call('HMGET', key, 'user', 'seq', 'status', 'issued', 'activated', 'expires', 'reason', 'seen')
  if t[3] == 'WAITING' then
    t = derive(KEYS[2], KEYS[3], c[1], c[2], t)
  end
  if t[3] == 'WAITING' and (not t[8] or tonumber(t[8]) < at) then
    redis.call('HSET', key, 'seen', ARGV[1])
    moved = moved + 1
  end
end
return moved
