-- find_with_cursor: a token and the queue cursor read together (QueueStore::find_with_cursor).
-- KEYS: 1 the token's hash, 2 cursor hash, 3 the draw's position table, 4 admissions zset
-- Reply: nil when there is no such token; else the token's TOKEN_FIELDS (as every reader sees
--        it: `derive`) then the cursor's CURSOR_FIELDS (missing values nil)
local t = redis.call('HMGET', KEYS[1], unpack(TOKEN_FIELDS))
if not t[3] then
  return false
end
local c = redis.call('HMGET', KEYS[2], unpack(CURSOR_FIELDS))
t = derive(KEYS[3], KEYS[4], c[1], c[4], t)
return { t[1], t[2], t[3], t[4], t[5], t[6], t[7], c[1], c[2], c[3], c[4], c[5], c[6] }
