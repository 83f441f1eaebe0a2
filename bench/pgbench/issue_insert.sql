-- The ceiling the issue target is measured against: a plain one-row INSERT into the token table
-- per transaction, with the same clients, users and tokens as issue.sql (not the adapter's SQL,
-- so not generated). Rows get seq :seqbase + n, far above any issued number; delete them after
-- the phase (DELETE FROM queue_tokens WHERE seq >= :seqbase) so the line stays gapless.
\set k :k + 1
\set n :base + :offset + :client_id + :k * :clients
\set seq :seqbase + :n
INSERT INTO queue_tokens (seq, token, user_id, status, issued_at)
VALUES (:seq, (md5('t' || :n) || md5('u' || :n)), lpad(to_hex(:n::bigint), 32, '0')::uuid, 'WAITING', now());
