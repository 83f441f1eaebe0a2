-- expire: writes EXPIRED (TTL) the tokens whose ACTIVE time is up, a batch at a time
-- (QueueStore::expire_tokens).
-- KEYS: 1 cursor hash, 2 waiting list, 3 admissions zset, 4 open records hash, 5 the draw's
--       position table
-- ARGV: 1 the line's namespace, 2 now (µs; '' = Redis' TIME), 3 most to change, 4 retention
--       of expired tokens (ms)
-- Reply: how many tokens changed
--
-- Atomic, and each token leaves the list in the script that writes it, so concurrent sweeps
-- change each token once. Bounded: at most `limit` tokens written and 4 * `limit` taken off
-- the list per call, whatever the size of the line.
--
-- The tokens an admission record covers (see "Admission records" in prelude.lua) are the head
-- of the WAITING list, in position order, and records expire in that order: once the record
-- expired (closed by `derived_active`) the head, up to its `through`, is popped, and each
-- popped token still stored WAITING is written EXPIRED (TTL) with the activated and expires
-- every reader derived for it (`derive`), and retired; one already written EXPIRED (paid,
-- abandoned, or retired by its user's new issue) is only dropped from the list. A record
-- whose every position left the list is dropped. So are tokens a tick skipped as abandoned
-- (written EXPIRED then) once no open record lies before them.
local now = clock(ARGV[2])
-- A line an earlier version wrote holds token values in its list, not `seq`s: refused before
-- anything is popped.
local layout = redis.call('HMGET', KEYS[1], 'epoch', 'layout')
check_layout(layout[1], layout[2])
local limit = tonumber(ARGV[3])
local line = line_of(ARGV[1])
local changed = 0

derived_active(KEYS[1], KEYS[3], KEYS[4], now, true)
local c = redis.call('HMGET', KEYS[1], 'admitted', 'swept', 'closed', 'draw_at')
local swept = swept_of(c[2], c[1])
-- The head may go up to the last closed record, and on over the positions before the first
-- open one (or up to the cursor when none is open): those were skipped as abandoned by a tick
-- that admitted none of them, and are written EXPIRED already.
local upto = tonumber(c[3] or '0')
local open = redis.call('ZRANGEBYSCORE', KEYS[3], '(' .. int(upto), '+inf', 'LIMIT', 0, 1)[1]
if open then
  upto = math.max(upto, tonumber(string.match(open, '^%d+:(%d+):') or '0'))
else
  upto = math.max(upto, tonumber(c[1] or '0'))
end
local popped, most = 0, 4 * limit
while changed < limit and popped < most and swept < upto do
  local k = math.min(upto - swept, limit - changed, most - popped)
  local values = redis.call('LPOP', KEYS[2], k)
  if not values then
    break
  end
  for _, value in ipairs(values) do
    swept = swept + 1
    local seq = tonumber(value)
    local t = load(line, seq)
    if t and t[3] == 'WAITING' then
      -- Written as every reader derived it (`derive`, by its position as the line shows it).
      local rec
      t, rec = derive(KEYS[5], KEYS[3], c[1], c[4], t)
      if not rec or tonumber(t[2]) ~= swept then
        error('the WAITING list is out of position order at ' .. int(swept))
      end
      retire(line, seq, t, rec.at, rec.expires, 'TTL', ARGV[4])
      changed = changed + 1
    end
  end
  popped = popped + #values
end
if popped > 0 then
  redis.call('HSET', KEYS[1], 'swept', int(swept))
  redis.call('ZREMRANGEBYSCORE', KEYS[3], '-inf', int(swept))
end
return changed
