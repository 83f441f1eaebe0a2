-- Generated from the PostgreSQL adapter's statements by crates/adapters-postgres/src/pgbench.rs;
-- do not edit: UPDATE_PGBENCH=1 cargo test -p adapters-postgres --lib pgbench
-- POST /reservations: authorize + ReservationStore::hold (the user's hold lock, then one
-- conditional insert). Seat i of the pool is (schedule :sbase + i % :nsched, number
-- :numbase + (i / :nsched) % :nseats); user 1 + i % 2000.
\set k :k + 1
\set i :offset + :client_id + :k * :clients
\set n 1 + :i % 2000
\set s :sbase + :i % :nsched
\set num :numbase + (:i / :nsched) % :nseats
\set seat :s * 1000 + :num
-- POST /reservations
SELECT t.seq AS seq, t.token, t.user_id, COALESCE(k.status, t.status) AS status, t.issued_at, COALESCE(k.activated_at, t.activated_at) AS activated_at, COALESCE(k.expires_at, t.expires_at) AS expires_at, COALESCE(k.reason, t.expired_reason) AS expired_reason FROM queue_tokens t JOIN queue_admission a ON a.room = t.room LEFT JOIN LATERAL (SELECT r.after, CASE WHEN r.expires_at IS NULL OR r.swept_through >= t.seq THEN 'EXPIRED' ELSE 'ACTIVE' END AS status, CASE WHEN r.expires_at IS NOT NULL THEN r.at END AS activated_at, COALESCE(r.expires_at, r.at) AS expires_at, CASE WHEN r.expires_at IS NULL THEN 'ABANDONED' WHEN r.swept_through >= t.seq THEN 'TTL' END AS reason FROM queue_admission_ranges r WHERE t.status = 'WAITING' AND t.seq <= a.admitted_through AND r.room = t.room AND r.through >= t.seq ORDER BY r.through LIMIT 1) k ON k.after < t.seq WHERE t.token = (md5('t' || :n) || left(md5('u' || :n), 16) || lpad(to_hex(bench.seq(:n)), 16, '0')) AND t.room = 'main';
\set hk (:n >> 32) # (:n & 4294967295)
BEGIN;
SELECT pg_advisory_xact_lock(1000003, :hk);
WITH src AS ( SELECT s.schedule_id, s.id, s.number, s.price FROM seats s JOIN schedules sc ON sc.id = s.schedule_id WHERE s.id = lpad(to_hex(:seat::bigint), 32, '0')::uuid AND s.schedule_id = lpad(to_hex(:s::bigint), 32, '0')::uuid AND sc.starts_at > now()), live AS ( SELECT count(*) AS n FROM reservations WHERE user_id = lpad(to_hex(:n::bigint), 32, '0')::uuid AND status = 'HELD' AND held_until > now()), ins AS ( INSERT INTO reservations (id, user_id, schedule_id, seat_id, seat_number, price, status, created_at, held_until, paid_at) SELECT gen_random_uuid(), lpad(to_hex(:n::bigint), 32, '0')::uuid, src.schedule_id, src.id, src.number, src.price, 'HELD', now(), now() + interval '300 seconds', NULL FROM src, live WHERE live.n < 4 ON CONFLICT (seat_id) WHERE status IN ('HELD', 'PAID') DO NOTHING RETURNING id, user_id, schedule_id, seat_id, seat_number, price, status, created_at, held_until, paid_at) SELECT ins.*, EXISTS (SELECT 1 FROM src) AS bookable, EXISTS (SELECT 1 FROM reservations r WHERE r.seat_id = lpad(to_hex(:seat::bigint), 32, '0')::uuid AND r.status IN ('HELD', 'PAID') AND (r.status = 'PAID' OR r.held_until > now())) AS claimed, (SELECT n FROM live) AS live_holds FROM (SELECT) AS one LEFT JOIN ins ON TRUE;
COMMIT;
