-- note_seen: the buyers of these tokens were seen at `at` (QueueStore::note_seen).
-- KEYS: the tokens' hashes (all of this line)
-- ARGV: 1 at (µs)
-- Reply: how many tokens' last sight moved
--
-- One script for the whole batch. A token's last sight only moves forward (max with what is
-- stored); unknown tokens and tokens no longer WAITING are left alone (no key is created).
local at = tonumber(ARGV[1])
local moved = 0
for _, key in ipairs(KEYS) do
  local t = redis.call('HMGET', key, 'status', 'seen')
  if t[1] == 'WAITING' and (not t[2] or tonumber(t[2]) < at) then
    redis.call('HSET', key, 'seen', ARGV[1])
    moved = moved + 1
  end
end
return moved
