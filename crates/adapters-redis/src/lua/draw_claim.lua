-- draw_claim: the first step of a draw (QueueStore::draw; see draw_chunk.lua, draw_finish.lua).
-- KEYS: 1 cursor hash, 2 waiting list, 3 staging list, 4 the draw's position table
-- ARGV: 1 now (µs; '' = Redis' TIME), 2 opens_at (µs), 3 seed (a u64, kept as its digits),
--       4 the caller's owner id, 5 the lease (µs)
-- Reply: { 'drawn', at, entrants, seed } when a draw is recorded (by anyone);
--        { 'fresh', at, 0, seed } when this call drew a line of no tokens (recorded at once);
--        { 'not_due' } before opens_at on the store's clock;
--        { 'held', µs left on the lease } while another caller's draw runs;
--        { 'claimed', at, opens_at, seed, length, staged, iback, base } when the caller owns
--          the draw: a fresh claim, or one taken over from an owner whose lease ran out, in
--          which case the values are that claim's (the same draw is finished) and `staged`
--          says how far its staging list got; `iback` how far issue times ever went back in
--          line order ('' if unknown); `base` the stored `seq` of the head of the line
--
-- A draw cannot renumber a million tokens in one script (a million tokens would block Redis for
-- seconds), so it is claimed here with a lease, written in chunks, and recorded by
-- draw_finish.lua. The claim fixes the draw: its time (the record's `at`), the opening, the
-- seed, and `length`, the WAITING tokens it renumbers (the head of the list; tokens issued
-- after the claim are appended behind them by draw_finish). Atomic, so of racing callers on
-- any instance one claims.
--
-- `base` (kept as `draw_base`): the claimed tokens' stored `seq`s are base .. base + length - 1
-- in list order, so the owner knows each one's from its index (the position table is indexed
-- by them, see draw_chunk.lua). That holds because issue.lua pushes each token's `seq` in turn
-- and only the expiry sweep takes them, from the head; the claim checks it on the first and
-- the last (seqs strictly increase along the list, so both ends matching means every one
-- does).
local now = clock(ARGV[1])
local c = redis.call('HMGET', KEYS[1], 'draw_at', 'draw_entrants', 'draw_seed', 'draw_owner', 'draw_lease',
  'draw_claim_at', 'draw_opens', 'draw_claim_seed', 'draw_len', 'draw_base', 'epoch', 'layout')
check_layout(c[11], c[12])
if c[1] then
  return { 'drawn', c[1], c[2], c[3] }
end
if now < tonumber(ARGV[2]) then
  return { 'not_due' }
end

-- The stored `seq` of the head of the WAITING list, checked against its `length`-th one.
local function base_of(length)
  local first = tonumber(redis.call('LINDEX', KEYS[2], 0) or '')
  local last = tonumber(redis.call('LINDEX', KEYS[2], length - 1) or '')
  if not first or not last or last - first ~= length - 1 then
    return nil
  end
  return first
end

local lease = int(now + tonumber(ARGV[5]))
if c[4] then
  if now < tonumber(c[5]) then
    return { 'held', int(tonumber(c[5]) - now) }
  end
  -- The owner's lease ran out (it died or stalled): take the same draw over. Its chunks are
  -- idempotent and check the owner, so a late one of the old owner writes nothing.
  local staged = redis.call('LLEN', KEYS[3])
  local base = c[10]
  if not base then
    return redis.error_reply('ERR a draw claim without its base seq')
  end
  redis.call('HSET', KEYS[1], 'draw_owner', ARGV[4], 'draw_lease', lease)
  return { 'claimed', c[6], c[7], c[8], c[9], int(staged), redis.call('HGET', KEYS[1], 'iback') or '', base }
end

ensure_epoch(KEYS[1])
-- Nothing is admitted before a draw (the port's rule), so the list holds WAITING tokens only.
-- Were admitted tokens still at its head (not yet swept, see "Admission records" in
-- prelude.lua), the draw would reorder them: refuse rather than move an admitted token.
local cur = redis.call('HMGET', KEYS[1], 'admitted', 'swept')
if swept_of(cur[2], cur[1]) < tonumber(cur[1] or '0') then
  return redis.error_reply('ERR a draw of a line with admitted tokens not yet swept')
end
local length = redis.call('LLEN', KEYS[2])
if length == 0 then
  redis.call('HSET', KEYS[1], 'draw_at', int(now), 'draw_entrants', '0', 'draw_seed', ARGV[3])
  return { 'fresh', int(now), '0', ARGV[3] }
end
local base = base_of(length)
if not base then
  return redis.error_reply('ERR the WAITING list is not in seq order: a draw cannot derive its tokens\' seqs')
end
redis.call('DEL', KEYS[3], KEYS[4])
redis.call('HSET', KEYS[1], 'draw_owner', ARGV[4], 'draw_lease', lease, 'draw_claim_at', int(now),
  'draw_opens', ARGV[2], 'draw_claim_seed', ARGV[3], 'draw_len', int(length), 'draw_base', int(base))
return { 'claimed', int(now), ARGV[2], ARGV[3], int(length), '0', redis.call('HGET', KEYS[1], 'iback') or '',
  int(base) }
