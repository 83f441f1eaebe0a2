-- expire: writes EXPIRED (TTL) the tokens whose ACTIVE time is up, a batch at a time
-- (QueueStore::expire_tokens).
-- KEYS: 1 active zset (tokens stored ACTIVE by an older version), 2 cursor hash, 3 waiting
--       list, 4 admissions zset, 5 open records hash, 6 the draw's position table
-- ARGV: 1 token key prefix, 2 user key prefix, 3 now (µs; '' = Redis' TIME), 4 most to change,
--       5 retention of expired tokens (ms)
-- Reply: how many tokens changed
--
-- Atomic, and each token leaves the list (or the zset) in the script that writes it, so
-- concurrent sweeps change each token once. Bounded: at most `limit` tokens written and
-- 4 * `limit` taken off the list per call, whatever the size of the line.
--
-- The tokens an admission record covers (see "Admission records" in prelude.lua) are the head
-- of the WAITING list, in position order, and records expire in that order: once the record
-- expired (closed by `derived_active`) the head, up to its `through`, is popped, and each
-- popped token still stored WAITING is written EXPIRED (TTL) with the activated and expires
-- every reader derived for it (`derive`), and retired; one already written EXPIRED (paid,
-- abandoned, or retired by its user's new issue) is only dropped from the list. A record
-- whose every position left the list is dropped. So are tokens a tick skipped as abandoned
-- (written EXPIRED then) once no open record lies before them.
local now = clock(ARGV[3])
local limit = tonumber(ARGV[4])
local changed = 0

-- Tokens stored ACTIVE by a version that wrote them at admission: as that version swept them.
-- Mirrors QueueToken::status_at: an ACTIVE token is EXPIRED from expires_at on (now >= it).
local due = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', int(now), 'LIMIT', 0, limit)
for _, value in ipairs(due) do
  local key = ARGV[1] .. value
  local t = redis.call('HMGET', key, 'status', 'user')
  if t[1] == 'ACTIVE' then
    retire(key, value, ARGV[2] .. (t[2] or ''), ARGV[5], 'TTL')
    changed = changed + 1
  end
  redis.call('ZREM', KEYS[1], value)
end

derived_active(KEYS[2], KEYS[4], KEYS[5], now, true)
local c = redis.call('HMGET', KEYS[2], 'admitted', 'swept', 'closed', 'draw_at')
local swept = swept_of(c[2], c[1])
-- The head may go up to the last closed record, and on over the positions before the first
-- open one (or up to the cursor when none is open): those were skipped as abandoned by a tick
-- that admitted none of them, and are written EXPIRED already.
local upto = tonumber(c[3] or '0')
local open = redis.call('ZRANGEBYSCORE', KEYS[4], '(' .. int(upto), '+inf', 'LIMIT', 0, 1)[1]
if open then
  upto = math.max(upto, tonumber(string.match(open, '^%d+:(%d+):') or '0'))
else
  upto = math.max(upto, tonumber(c[1] or '0'))
end
local popped, most = 0, 4 * limit
while changed < limit and popped < most and swept < upto do
  local k = math.min(upto - swept, limit - changed, most - popped)
  local values = redis.call('LPOP', KEYS[3], k)
  if not values then
    break
  end
  for _, value in ipairs(values) do
    swept = swept + 1
    local key = ARGV[1] .. value
    local t = redis.call('HMGET', key, unpack(TOKEN_FIELDS))
    if t[3] == 'WAITING' then
      -- Written as every reader derived it (`derive`, by its position as the line shows it).
      local rec
      t, rec = derive(KEYS[6], KEYS[4], c[1], c[4], t)
      if not rec or tonumber(t[2]) ~= swept then
        error('the WAITING list is out of position order at ' .. int(swept))
      end
      redis.call('HSET', key, 'activated', t[5], 'expires', t[6])
      retire(key, value, ARGV[2] .. (t[1] or ''), ARGV[5], 'TTL')
      changed = changed + 1
    end
  end
  popped = popped + #values
end
if popped > 0 then
  redis.call('HSET', KEYS[2], 'swept', int(swept))
  redis.call('ZREMRANGEBYSCORE', KEYS[4], '-inf', int(swept))
end
return changed
