-- The tokens written since their issue: paid, expired, or stored ACTIVE (before admission by
-- ranges). An admission range's ACTIVE tokens are counted by subtraction, its size less the
-- tokens written at its places (`queue::active_count`), and this index finds those without
-- reading the range's WAITING tokens. A token enters it when its status first leaves WAITING,
-- a write that already touches every index whose predicate names the status (not HOT); issue
-- writes WAITING tokens, which it never holds.
CREATE INDEX queue_tokens_written ON queue_tokens (room, seq) WHERE status <> 'WAITING';
