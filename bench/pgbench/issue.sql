-- Generated from the PostgreSQL adapter's statements by crates/adapters-postgres/src/pgbench.rs;
-- do not edit: UPDATE_PGBENCH=1 cargo test -p adapters-postgres --lib pgbench
-- POST /queue/tokens for a new user: the transaction the adapter's issue batcher runs, for a
-- batch of one (the server batches concurrent issues; pgbench cannot). The cursor read is part
-- of the batch's first statement.
\set k :k + 1
\set n :base + :offset + :client_id + :k * :clients
-- POST /queue/tokens: the group-commit batch, here of one request
BEGIN;
SELECT pg_advisory_xact_lock(1000001, 0);
WITH req AS (SELECT r.user_id, r.now FROM unnest(ARRAY[lpad(to_hex(:n::bigint), 32, '0')::uuid]::uuid[], ARRAY[now()]::timestamptz[]) AS r (user_id, now)), lapsed AS (UPDATE queue_tokens t SET status = 'EXPIRED', expired_reason = 'TTL' FROM req WHERE t.room = 'main' AND t.user_id = req.user_id AND t.status = 'ACTIVE' AND t.expires_at <= req.now RETURNING t.seq) SELECT a.admitted_through, a.last_admission_at, a.draw_at, a.draw_entrants, a.draw_seed, (SELECT count(*) FROM lapsed) AS lapsed, live.seq, live.token, live.user_id, live.status, live.issued_at, live.activated_at, live.expires_at, live.expired_reason FROM queue_admission a LEFT JOIN ( SELECT t.seq, t.token, t.user_id, t.status, t.issued_at, t.activated_at, t.expires_at, t.expired_reason FROM queue_tokens t JOIN req ON t.user_id = req.user_id WHERE t.room = 'main' AND t.status IN ('WAITING', 'ACTIVE') AND (t.status = 'WAITING' OR t.expires_at > req.now)) live ON TRUE WHERE a.room = 'main';
INSERT INTO queue_tokens (room, seq, token, user_id, status, issued_at) SELECT 'main', top.seq + r.ord, r.token, r.user_id, 'WAITING', r.issued_at FROM (SELECT COALESCE(max(seq), 0) AS seq FROM queue_tokens WHERE room = 'main') AS top, unnest(ARRAY[lpad(to_hex(:n::bigint), 32, '0')::uuid]::uuid[], ARRAY[(md5('t' || :n) || md5('u' || :n))]::text[], ARRAY[now()]::timestamptz[]) WITH ORDINALITY AS r (user_id, token, issued_at, ord) RETURNING seq, token, user_id, status, issued_at, activated_at, expires_at, expired_reason;
COMMIT;
