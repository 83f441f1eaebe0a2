-- confirm: the first half of a round of replica confirmation (aio.rs, "Replica confirmations
-- in rounds"), sent in one pipeline with the round's `WAIT`, on one socket to the master the
-- line's slot maps to now.
-- KEYS: 1 the line's cursor hash (routes the call; not read)
-- ARGV: 1 the line's namespace, then for each issue of the round its arrival `seq` and the
--       random part of its value (24 bytes)
-- Reply: how many tokens were checked; an error when one is not stored on this master.
--
-- `WAIT` counts from the point of the master's replication stream its socket reached with the
-- last command it ran (any command: Redis moves a client's offset after reads too), so after
-- this script it covers every write the master ran before, whichever socket it came on. What
-- it cannot tell is whether this is the master the round's scripts ran on: after a failover
-- the slot maps to the promoted replica, whose replicas may confirm a stream that never held
-- them. So this checks that every token of the round is stored here (`load` matches its
-- random part, as stored WAITING or retired EXPIRED); a round sent to a master that lacks
-- one fails instead of confirming it.
local line = line_of(ARGV[1])
for i = 2, #ARGV - 1, 2 do
  if not load(line, tonumber(ARGV[i]), ARGV[i + 1]) then
    return redis.error_reply('ERR confirm: a token of this round is not stored on this master')
  end
end
return (#ARGV - 1) / 2
