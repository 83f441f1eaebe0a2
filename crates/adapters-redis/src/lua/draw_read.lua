-- draw_read: a slice of the WAITING list, the tokens' values and, when asked, which of them
-- are entrants of a draw (issued before the opening). Writes nothing.
-- KEYS: 1 waiting list
-- ARGV: 1 the line's namespace, 2 first index, 3 last index (0-based, inclusive), 4 opens_at
--       (µs), 5 '1' to classify, '0' not to (the caller knows from bisecting, see
--       draw_issued.lua)
-- Reply: { the tokens' values, 32 bytes each (the random part and the `seq`: see "Records" in
--        prelude.lua), one after the other in list order; a string of '1' (an entrant) or '0'
--        per token, empty unless asked }
--
-- The claimed tokens are stored WAITING (nothing is admitted before a draw) with consecutive
-- `seq`s, so their records fill whole buckets: each bucket is read once (HGETALL), not each
-- record. Two strings rather than two values per token: a million tokens cross the wire in a
-- few hundred replies.
local line = line_of(ARGV[1])
local seqs = redis.call('LRANGE', KEYS[1], ARGV[2], ARGV[3])
local classify, opens = ARGV[5] == '1', tonumber(ARGV[4])
local values, flags = {}, {}
local read_bucket, records = nil, nil
for i, value in ipairs(seqs) do
  local seq = tonumber(value)
  local bucket, field = slot_of(line, seq)
  if bucket ~= read_bucket then
    read_bucket, records = bucket, {}
    local all = redis.call('HGETALL', bucket)
    for j = 1, #all, 2 do
      records[all[j]] = all[j + 1]
    end
  end
  local raw = records[field]
  if not raw then
    return redis.error_reply('ERR a claimed token of seq ' .. value .. ' is not stored WAITING')
  end
  values[i] = string.sub(raw, 1, 24) .. struct.pack('>I8', seq)
  if classify then
    flags[i] = struct.unpack('>I8', raw, 41) < opens and '1' or '0'
  end
end
return { table.concat(values), table.concat(flags) }
