-- Generated from the PostgreSQL adapter's statements by crates/adapters-postgres/src/pgbench.rs;
-- do not edit: UPDATE_PGBENCH=1 cargo test -p adapters-postgres --lib pgbench
-- GET /schedules/{id}/seats: authorize (QueueStore::find) + CatalogueStore::seats. The same
-- (user, schedule) pairs as the wrk data file.
\set i random(0, 9999)
\set n 1 + :i % 2000
\set s 1 + (:i * 7) % :schedules
-- GET /schedules/{id}/seats
SELECT t.seq AS seq, t.token, t.user_id, COALESCE(k.status, t.status) AS status, t.issued_at, COALESCE(k.activated_at, t.activated_at) AS activated_at, COALESCE(k.expires_at, t.expires_at) AS expires_at, COALESCE(k.reason, t.expired_reason) AS expired_reason FROM queue_tokens t JOIN queue_admission a ON a.room = t.room LEFT JOIN LATERAL (SELECT r.after, CASE WHEN r.expires_at IS NULL OR r.swept_through >= t.seq THEN 'EXPIRED' ELSE 'ACTIVE' END AS status, CASE WHEN r.expires_at IS NOT NULL THEN r.at END AS activated_at, COALESCE(r.expires_at, r.at) AS expires_at, CASE WHEN r.expires_at IS NULL THEN 'ABANDONED' WHEN r.swept_through >= t.seq THEN 'TTL' END AS reason FROM queue_admission_ranges r WHERE t.status = 'WAITING' AND t.seq <= a.admitted_through AND r.room = t.room AND r.through >= t.seq ORDER BY r.through LIMIT 1) k ON k.after < t.seq WHERE t.token = (md5('t' || :n) || left(md5('u' || :n), 16) || lpad(to_hex(bench.seq(:n)), 16, '0')) AND t.room = 'main';
SELECT s.id, sc.id AS schedule_id, s.number, s.price, r.id AS reservation_id, r.status, r.held_until FROM schedules sc LEFT JOIN seats s ON s.schedule_id = sc.id LEFT JOIN reservations r ON r.seat_id = s.id AND r.status IN ('HELD', 'PAID') WHERE sc.id = lpad(to_hex(:s::bigint), 32, '0')::uuid ORDER BY s.number;
