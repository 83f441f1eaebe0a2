-- Generated from the PostgreSQL adapter's statements by crates/adapters-postgres/src/pgbench.rs;
-- do not edit: UPDATE_PGBENCH=1 cargo test -p adapters-postgres --lib pgbench
-- GET /queue/token: QueueStore::find_with_cursor. The same tokens as the wrk data file:
-- users :base, :base + :step, ... (:count of them).
\set i random(0, :count - 1)
\set n :base + :i * :step
-- GET /queue/token
SELECT t.seq AS seq, t.token, t.user_id, COALESCE(k.status, t.status) AS status, t.issued_at, COALESCE(k.activated_at, t.activated_at) AS activated_at, COALESCE(k.expires_at, t.expires_at) AS expires_at, COALESCE(k.reason, t.expired_reason) AS expired_reason, a.admitted_through, a.last_admission_at, a.draw_at, a.draw_entrants, a.draw_seed FROM queue_tokens t JOIN queue_admission a ON a.room = t.room LEFT JOIN LATERAL (SELECT r.after, CASE WHEN r.expires_at IS NULL OR r.swept_through >= t.seq THEN 'EXPIRED' ELSE 'ACTIVE' END AS status, CASE WHEN r.expires_at IS NOT NULL THEN r.at END AS activated_at, COALESCE(r.expires_at, r.at) AS expires_at, CASE WHEN r.expires_at IS NULL THEN 'ABANDONED' WHEN r.swept_through >= t.seq THEN 'TTL' END AS reason FROM queue_admission_ranges r WHERE t.status = 'WAITING' AND t.seq <= a.admitted_through AND r.room = t.room AND r.through >= t.seq ORDER BY r.through LIMIT 1) k ON k.after < t.seq WHERE t.token = (md5('t' || :n) || left(md5('u' || :n), 16) || lpad(to_hex(bench.seq(:n)), 16, '0')) AND t.room = 'main';
