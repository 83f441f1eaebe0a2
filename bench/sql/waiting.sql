-- Appends WAITING tokens for users :from..:to to the end of the line, keeping the seq gapless
-- (psql -v from=... -v to=...): user n at seq bench.seq(n) (prepare.sql), which its value
-- carries, so the line must end at bench.seq(:from) - 1 (it stops otherwise). It takes the
-- adapter's issue lock (crates/adapters-postgres, `locks::ISSUE_BEGIN`), so no batch numbers
-- while it runs.
--
-- Tokens are random-looking, so a million inserts into the token index would mostly be random
-- page writes; rebuilding that index once after the load (a sort) is several times faster.
-- It comes back under its own name, with the same definition.
\set ON_ERROR_STOP on
BEGIN;
SET LOCAL maintenance_work_mem = '256MB';
SELECT pg_advisory_xact_lock(1000001, 0);
-- Token n's value carries its seq, bench.seq(n) (prepare.sql): the line must end just before it.
SELECT bench.fail('the line ends at ' || COALESCE(max(seq), 0) || ', not at bench.seq(' || :from || ') - 1')
FROM queue_tokens WHERE room = 'main' HAVING COALESCE(max(seq), 0) + 1 <> bench.seq(:from);
ALTER TABLE queue_tokens DROP CONSTRAINT queue_tokens_token_key;
INSERT INTO queue_tokens (seq, token, user_id, status, issued_at)
SELECT bench.seq(n), bench.tok(n), bench.uid(n), 'WAITING', now()
FROM generate_series(:from, :to) n;
ALTER TABLE queue_tokens ADD CONSTRAINT queue_tokens_token_key UNIQUE (token);
COMMIT;
ANALYZE queue_tokens;
