-- find: a token (QueueStore::find), its `seq` as the line shows it (drawn_seq).
-- KEYS: 1 the token's hash, 2 cursor hash, 3 the draw's position table
-- Reply: nil when there is no such token; else the token's TOKEN_FIELDS (missing values nil)
local t = redis.call('HMGET', KEYS[1], unpack(TOKEN_FIELDS))
if not t[3] then
  return false
end
t[2] = drawn_seq(KEYS[3], redis.call('HGET', KEYS[2], 'draw_at'), t[2])
return t
