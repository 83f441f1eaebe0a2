-- find_with_cursor: a token and the queue cursor read together (QueueStore::find_with_cursor).
-- KEYS: 1 cursor hash, 2 the draw's position table, 3 admissions zset
-- ARGV: 1 the line's namespace, 2 the token's arrival `seq`, 3 its random part (24 bytes)
-- Reply: nil when there is no such token; else the token's fields (as every reader sees it:
--        `derive`; see find.lua) then the cursor's CURSOR_FIELDS (missing values nil)
local t = load(line_of(ARGV[1]), tonumber(ARGV[2]), ARGV[3])
if not t then
  return false
end
local c = redis.call('HMGET', KEYS[1], unpack(CURSOR_FIELDS))
t = derive(KEYS[2], KEYS[3], c[1], c[4], t)
return { t[1], t[2], t[3], t[4], t[5], t[6], t[7], c[1], c[2], c[3], c[4], c[5], c[6] }
