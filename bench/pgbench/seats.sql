-- Generated from the PostgreSQL adapter's statements by crates/adapters-postgres/src/pgbench.rs;
-- do not edit: UPDATE_PGBENCH=1 cargo test -p adapters-postgres --lib pgbench
-- GET /schedules/{id}/seats: authorize (QueueStore::find) + CatalogueStore::seats. The same
-- (user, schedule) pairs as the wrk data file.
\set i random(0, 9999)
\set n 1 + :i % 2000
\set s 1 + (:i * 7) % :schedules
-- GET /schedules/{id}/seats
SELECT t.seq, t.token, t.user_id, t.status, t.issued_at, t.activated_at, t.expires_at, t.expired_reason FROM queue_tokens t WHERE t.token = (md5('t' || :n) || md5('u' || :n)) AND t.room = 'main';
SELECT s.id, sc.id AS schedule_id, s.number, s.price, r.id AS reservation_id, r.status, r.held_until FROM schedules sc LEFT JOIN seats s ON s.schedule_id = sc.id LEFT JOIN reservations r ON r.seat_id = s.id AND r.status IN ('HELD', 'PAID') WHERE sc.id = lpad(to_hex(:s::bigint), 32, '0')::uuid ORDER BY s.number;
