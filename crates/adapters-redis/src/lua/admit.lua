-- admit: one admission tick (QueueStore::admit).
-- KEYS: 1 cursor hash, 2 waiting list, 3 admissions zset, 4 open records hash
-- ARGV: 1 the line's namespace, 2 now (µs; '' = Redis' TIME), 3 batch N, 4 interval M (µs),
--       5 active TTL (µs), 6 max active ('' = no cap), 7 abandon after (µs; '' = never),
--       8 retention of expired tokens (ms)
-- Reply: { 'wait', µs until due }, { 'admitted', n, skipped } or { 'drawing' } while a draw of
--        this line is claimed and unfinished (admission waits for the drawn order)
--
-- Atomic and serialised against every other caller on every instance (Redis runs one script
-- at a time), and timed on one clock, so together they admit at most N per interval.
--
-- O(1) in n without abandon_after: it writes no token. It moves the cursor by n and records
-- the admission once (see "Admission records" in prelude.lua): every reader derives the n
-- tokens' ACTIVE status, activated and expires from their position and that record
-- (`derive`). The tokens stay in the WAITING list until expire.lua sweeps them.
local now = clock(ARGV[2])
if drawing(KEYS[1]) then
  return { 'drawing' }
end
local c = redis.call('HMGET', KEYS[1], 'last', 'admitted', 'swept', 'epoch', 'layout')
check_layout(c[4], c[5])
local last = c[1]
local interval = tonumber(ARGV[4])

-- Mirrors AdmissionPolicy::is_due: due when nothing was admitted yet or now >= last + M.
if last and now < tonumber(last) + interval then
  return { 'wait', int(tonumber(last) + interval - now) }
end

local admitted0 = tonumber(c[2] or '0')
local swept = swept_of(c[3], c[2])
-- Closes the records expired at now whether or not there is a cap, so the walk stays short.
local active = derived_active(KEYS[1], KEYS[3], KEYS[4], now, true)

-- Mirrors AdmissionPolicy::quota: min(N, cap - active (never below 0), waiting), with active
-- the tokens ACTIVE and unexpired at now (expires_at > now, QueueToken::status_at), counted
-- only when there is a cap. `waiting` counts every WAITING token, present or not: the list
-- past the cursor (its head, up to index admitted - swept, is admitted and not yet swept).
local start = admitted0 - swept
local n = math.min(tonumber(ARGV[3]), redis.call('LLEN', KEYS[2]) - start)
if ARGV[6] ~= '' then
  n = math.min(n, math.max(tonumber(ARGV[6]) - active, 0))
end
n = math.max(n, 0)

local at = int(now)
local expires = int(now + tonumber(ARGV[5])) -- mirrors AdmissionPolicy::expiry_for
local abandon_after = ARGV[7] ~= '' and tonumber(ARGV[7]) or nil
local admitted, skipped = n, 0
if abandon_after then
  -- Absent tokens met before the n-th present one are skipped: each is written EXPIRED
  -- (ABANDONED) now; the present ones stay stored WAITING, derived ACTIVE like the rest.
  -- The walk reads the list from the cursor on, a slice of what is still missing at a time.
  local line = line_of(ARGV[1])
  admitted = 0
  local i = start
  while admitted < n do
    local values = redis.call('LRANGE', KEYS[2], i, i + (n - admitted) - 1)
    if #values == 0 then
      break
    end
    i = i + #values
    for _, value in ipairs(values) do
      local seq = tonumber(value)
      local t = load(line, seq)
      if not t or t[3] ~= 'WAITING' then
        error('the WAITING list holds ' .. value .. ', no token stored WAITING, past the cursor')
      end
      local seen = math.max(tonumber(t[4]), t.seen or 0)
      -- Mirrors AdmissionPolicy::is_present: present while now < last_seen + abandon_after,
      -- last_seen the later of the issue and the last note_seen.
      if now < seen + abandon_after then
        admitted = admitted + 1
      else
        retire(line, seq, t, nil, at, 'ABANDONED', ARGV[8])
        skipped = skipped + 1
      end
    end
  end
end
local through = admitted0 + admitted + skipped
if admitted > 0 then
  local name = int(through)
  redis.call('ZADD', KEYS[3], name, name .. ':' .. int(admitted0) .. ':' .. at .. ':' .. expires)
  redis.call('HSET', KEYS[4], name, int(admitted))
  redis.call('HINCRBY', KEYS[1], 'live', int(admitted))
  redis.call('HSET', KEYS[1], 'last', at)
end
if admitted + skipped > 0 then
  -- `swept` is written with the first record: absent, the line's earlier admissions (by an
  -- older version) popped their tokens, so its head was admitted + 1.
  redis.call('HSET', KEYS[1], 'admitted', int(through), 'swept', int(swept))
end
if skipped > 0 then
  redis.call('HINCRBY', KEYS[1], 'abandoned', int(skipped))
end
return { 'admitted', int(admitted), int(skipped) }
