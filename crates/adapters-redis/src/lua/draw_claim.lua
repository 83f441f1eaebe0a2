-- draw_claim: the first step of a draw (QueueStore::draw; see draw_chunk.lua, draw_finish.lua).
-- KEYS: 1 cursor hash, 2 waiting list, 3 staging list
-- ARGV: 1 now (µs; '' = Redis' TIME), 2 opens_at (µs), 3 seed (a u64, kept as its digits),
--       4 the caller's owner id, 5 the lease (µs)
-- Reply: { 'drawn', at, entrants, seed } when a draw is recorded (by anyone);
--        { 'fresh', at, 0, seed } when this call drew a line of no tokens (recorded at once);
--        { 'not_due' } before opens_at on the store's clock;
--        { 'held', µs left on the lease } while another caller's draw runs;
--        { 'claimed', at, opens_at, seed, length, staged, iback } when the caller owns the draw:
--          a fresh claim, or one taken over from an owner whose lease ran out, in which case
--          the values are that claim's (the same draw is finished) and `staged` says how
--          far its staging list got; `iback` how far issue times ever went back in line order
--          (issue.lua), '' when unknown.
--
-- A draw is too long for one script (a million tokens would block Redis for seconds), so it
-- is claimed here with a lease, written in chunks, and recorded by draw_finish.lua. The claim
-- fixes the draw: its time (the record's `at`), the opening, the seed, and `length`, the WAITING
-- tokens it renumbers (the head of the list; tokens issued after the claim are appended
-- behind them by draw_finish). Atomic, so of racing callers on any instance one claims.
local now = clock(ARGV[1])
local c = redis.call('HMGET', KEYS[1], 'draw_at', 'draw_entrants', 'draw_seed', 'draw_owner', 'draw_lease',
  'draw_claim_at', 'draw_opens', 'draw_claim_seed', 'draw_len')
if c[1] then
  return { 'drawn', c[1], c[2], c[3] }
end
if now < tonumber(ARGV[2]) then
  return { 'not_due' }
end
local lease = int(now + tonumber(ARGV[5]))
if c[4] then
  if now < tonumber(c[5]) then
    return { 'held', int(tonumber(c[5]) - now) }
  end
  -- The owner's lease ran out (it died or stalled): take the same draw over. Its chunks are
  -- idempotent and check the owner, so a late one of the old owner writes nothing.
  redis.call('HSET', KEYS[1], 'draw_owner', ARGV[4], 'draw_lease', lease)
  return { 'claimed', c[6], c[7], c[8], c[9], int(redis.call('LLEN', KEYS[3])),
    redis.call('HGET', KEYS[1], 'iback') or '' }
end

ensure_epoch(KEYS[1])
local length = redis.call('LLEN', KEYS[2])
if length == 0 then
  redis.call('HSET', KEYS[1], 'draw_at', int(now), 'draw_entrants', '0', 'draw_seed', ARGV[3])
  return { 'fresh', int(now), '0', ARGV[3] }
end
redis.call('DEL', KEYS[3])
redis.call('HSET', KEYS[1], 'draw_owner', ARGV[4], 'draw_lease', lease, 'draw_claim_at', int(now),
  'draw_opens', ARGV[2], 'draw_claim_seed', ARGV[3], 'draw_len', int(length))
return { 'claimed', int(now), ARGV[2], ARGV[3], int(length), '0', redis.call('HGET', KEYS[1], 'iback') or '' }
