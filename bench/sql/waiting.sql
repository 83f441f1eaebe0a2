-- Appends WAITING tokens for users :from..:to to the end of the line, keeping the seq gapless
-- (psql -v from=... -v to=...). It takes the adapter's issue lock (crates/adapters-postgres,
-- `locks::ISSUE_BEGIN`), so it numbers after every committed issue batch and no batch numbers
-- while it runs.
--
-- Tokens are random-looking, so a million inserts into the token index would mostly be random
-- page writes; rebuilding that index once after the load (a sort) is several times faster.
-- It comes back under its own name, with the same definition.
\set ON_ERROR_STOP on
BEGIN;
SET LOCAL maintenance_work_mem = '256MB';
SELECT pg_advisory_xact_lock(1000001, 0);
SELECT COALESCE(max(seq), 0) - :from + 1 AS offset FROM queue_tokens \gset
ALTER TABLE queue_tokens DROP CONSTRAINT queue_tokens_token_key;
INSERT INTO queue_tokens (seq, token, user_id, status, issued_at)
SELECT :offset + n, bench.tok(n), bench.uid(n), 'WAITING', now()
FROM generate_series(:from, :to) n;
ALTER TABLE queue_tokens ADD CONSTRAINT queue_tokens_token_key UNIQUE (token);
COMMIT;
ANALYZE queue_tokens;
