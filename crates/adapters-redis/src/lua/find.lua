-- find: a token (QueueStore::find), as every reader sees it (`derive`: its `seq` as the line
-- shows it, its admission derived from its position and the record covering it).
-- KEYS: 1 the token's hash, 2 cursor hash, 3 the draw's position table, 4 admissions zset
-- Reply: nil when there is no such token; else the token's TOKEN_FIELDS (missing values nil)
local t = redis.call('HMGET', KEYS[1], unpack(TOKEN_FIELDS))
if not t[3] then
  return false
end
local c = redis.call('HMGET', KEYS[2], 'admitted', 'draw_at')
return (derive(KEYS[3], KEYS[4], c[1], c[2], t))
