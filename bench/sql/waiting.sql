-- Appends WAITING tokens for users :from..:to to the end of the line, keeping the gapless seq
-- and the counter consistent (psql -v from=... -v to=...).
--
-- Tokens are random-looking, so a million inserts into the token index would mostly be random
-- page writes; rebuilding that index once after the load (a sort) is several times faster.
-- It comes back under its own name, with the same definition.
\set ON_ERROR_STOP on
BEGIN;
SET LOCAL maintenance_work_mem = '256MB';
SELECT last_seq - :from + 1 AS offset FROM queue_counter FOR UPDATE \gset
ALTER TABLE queue_tokens DROP CONSTRAINT queue_tokens_token_key;
INSERT INTO queue_tokens (seq, token, user_id, status, issued_at)
SELECT :offset + n, bench.tok(n), bench.uid(n), 'WAITING', now()
FROM generate_series(:from, :to) n;
ALTER TABLE queue_tokens ADD CONSTRAINT queue_tokens_token_key UNIQUE (token);
UPDATE queue_counter SET last_seq = :offset + :to;
COMMIT;
ANALYZE queue_tokens;
