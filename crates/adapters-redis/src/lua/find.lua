-- find: a token (QueueStore::find), as every reader sees it (`derive`: its `seq` as the line
-- shows it, its admission derived from its position and the record covering it).
-- KEYS: 1 cursor hash, 2 the draw's position table, 3 admissions zset
-- ARGV: 1 the line's namespace, 2 the token's arrival `seq`, 3 its random part (24 bytes)
-- Reply: nil when there is no such token; else the token's fields (user (its 16 bytes), seq,
--        status, issued, activated, expires, reason; missing values nil)
local t = load(line_of(ARGV[1]), tonumber(ARGV[2]), ARGV[3])
if not t then
  return false
end
local c = redis.call('HMGET', KEYS[1], 'admitted', 'draw_at')
t = derive(KEYS[2], KEYS[3], c[1], c[2], t)
return { t[1], t[2], t[3], t[4], t[5], t[6], t[7] }
