-- Generated from the PostgreSQL adapter's statements by crates/adapters-postgres/src/pgbench.rs;
-- do not edit: UPDATE_PGBENCH=1 cargo test -p adapters-postgres --lib pgbench
-- One whole purchase, as the HTTP funnel makes it: issue, one poll, the seat map, reserve,
-- charge, pay, for a new user :base + i who takes seat i of the funnel pool (schedules
-- :sbase.., :nseats seats each). Admission itself is the scheduler's (one transaction a
-- tick for everyone), not per-user work, so it is not here: the new token stays WAITING
-- and the settlement runs anyway (pgbench does not decide), the same statements as for an
-- admitted user. Variables kept between statements are bound as parameters (-M prepared
-- or extended, as bench/run.sh runs it).
\set k :k + 1
\set i :offset + :client_id + :k * :clients
\set n :base + :i
\set s :sbase + :i % :nsched
\set num 1 + (:i / :nsched) % :nseats
\set seat :s * 1000 + :num
-- POST /queue/tokens: the group-commit batch, here of one request
BEGIN;
SELECT pg_advisory_xact_lock(1000001, 0);
WITH req AS (SELECT r.user_id, r.now FROM unnest(ARRAY[lpad(to_hex(:n::bigint), 32, '0')::uuid]::uuid[], ARRAY[now()]::timestamptz[]) AS r (user_id, now)), lapsed AS (UPDATE queue_tokens t SET status = 'EXPIRED' FROM req WHERE t.user_id = req.user_id AND t.status = 'ACTIVE' AND t.expires_at <= req.now RETURNING t.seq) SELECT a.admitted_through, a.last_admission_at, (SELECT count(*) FROM lapsed) AS lapsed, live.seq, live.token, live.user_id, live.status, live.issued_at, live.activated_at, live.expires_at FROM queue_admission a LEFT JOIN ( SELECT t.seq, t.token, t.user_id, t.status, t.issued_at, t.activated_at, t.expires_at FROM queue_tokens t JOIN req ON t.user_id = req.user_id WHERE t.status IN ('WAITING', 'ACTIVE') AND (t.status = 'WAITING' OR t.expires_at > req.now)) live ON TRUE;
INSERT INTO queue_tokens (seq, token, user_id, status, issued_at) SELECT top.seq + r.ord, r.token, r.user_id, 'WAITING', r.issued_at FROM (SELECT COALESCE(max(seq), 0) AS seq FROM queue_tokens) AS top, unnest(ARRAY[lpad(to_hex(:n::bigint), 32, '0')::uuid]::uuid[], ARRAY[(md5('t' || :n) || md5('u' || :n))]::text[], ARRAY[now()]::timestamptz[]) WITH ORDINALITY AS r (user_id, token, issued_at, ord) RETURNING seq, token, user_id, status, issued_at, activated_at, expires_at;
COMMIT;
-- GET /queue/token
SELECT t.seq, t.token, t.user_id, t.status, t.issued_at, t.activated_at, t.expires_at, a.admitted_through, a.last_admission_at FROM queue_tokens t CROSS JOIN queue_admission a WHERE t.token = (md5('t' || :n) || md5('u' || :n));
-- GET /schedules/{id}/seats
SELECT t.seq, t.token, t.user_id, t.status, t.issued_at, t.activated_at, t.expires_at FROM queue_tokens t WHERE t.token = (md5('t' || :n) || md5('u' || :n));
SELECT s.id, sc.id AS schedule_id, s.number, s.price, r.id AS reservation_id, r.status, r.held_until FROM schedules sc LEFT JOIN seats s ON s.schedule_id = sc.id LEFT JOIN reservations r ON r.seat_id = s.id AND r.status IN ('HELD', 'PAID') WHERE sc.id = lpad(to_hex(:s::bigint), 32, '0')::uuid ORDER BY s.number;
-- POST /reservations
SELECT t.seq, t.token, t.user_id, t.status, t.issued_at, t.activated_at, t.expires_at FROM queue_tokens t WHERE t.token = (md5('t' || :n) || md5('u' || :n));
\set hk (:n >> 32) # (:n & 4294967295)
BEGIN;
SELECT pg_advisory_xact_lock(1000003, :hk);
WITH src AS ( SELECT s.schedule_id, s.id, s.number, s.price FROM seats s JOIN schedules sc ON sc.id = s.schedule_id WHERE s.id = lpad(to_hex(:seat::bigint), 32, '0')::uuid AND s.schedule_id = lpad(to_hex(:s::bigint), 32, '0')::uuid AND sc.starts_at > now()), live AS ( SELECT count(*) AS n FROM reservations WHERE user_id = lpad(to_hex(:n::bigint), 32, '0')::uuid AND status = 'HELD' AND held_until > now()), ins AS ( INSERT INTO reservations (id, user_id, schedule_id, seat_id, seat_number, price, status, created_at, held_until, paid_at) SELECT gen_random_uuid(), lpad(to_hex(:n::bigint), 32, '0')::uuid, src.schedule_id, src.id, src.number, src.price, 'HELD', now(), now() + interval '300 seconds', NULL FROM src, live WHERE live.n < 4 ON CONFLICT (seat_id) WHERE status IN ('HELD', 'PAID') DO NOTHING RETURNING id, user_id, schedule_id, seat_id, seat_number, price, status, created_at, held_until, paid_at) SELECT ins.*, EXISTS (SELECT 1 FROM src) AS bookable, EXISTS (SELECT 1 FROM reservations r WHERE r.seat_id = lpad(to_hex(:seat::bigint), 32, '0')::uuid AND r.status IN ('HELD', 'PAID') AND (r.status = 'PAID' OR r.held_until > now())) AS claimed, (SELECT n FROM live) AS live_holds FROM (SELECT) AS one LEFT JOIN ins ON TRUE \gset r_
COMMIT;
-- POST /users/{id}/balance/charge
WITH a AS ( INSERT INTO accounts AS a (user_id, balance) SELECT lpad(to_hex(:n::bigint), 32, '0')::uuid, 300000 WHERE 300000 <= 10000000000 ON CONFLICT (user_id) DO UPDATE SET balance = a.balance + EXCLUDED.balance WHERE a.balance + EXCLUDED.balance <= 10000000000 RETURNING a.balance), l AS ( INSERT INTO ledger_entries (id, user_id, kind, amount, balance_after, at) SELECT gen_random_uuid(), lpad(to_hex(:n::bigint), 32, '0')::uuid, 'CHARGE', 300000, a.balance, now() FROM a RETURNING balance_after) SELECT (SELECT balance_after FROM l) AS credited, (SELECT balance FROM accounts WHERE user_id = lpad(to_hex(:n::bigint), 32, '0')::uuid) AS seen;
-- POST /payments
SELECT t.seq, t.token, t.user_id, t.status, t.issued_at, t.activated_at, t.expires_at FROM queue_tokens t WHERE t.token = (md5('t' || :n) || md5('u' || :n));
BEGIN;
SELECT pg_advisory_xact_lock(1000004, ('x' || left(md5('t' || :n), 8))::bit(32)::int);
WITH r AS ( SELECT id, user_id, schedule_id, seat_id, seat_number, price, status, created_at, held_until, paid_at FROM reservations WHERE id = :r_id::uuid FOR UPDATE), a AS (SELECT balance FROM accounts WHERE user_id = lpad(to_hex(:n::bigint), 32, '0')::uuid AND (SELECT count(*) FROM r) >= 0 FOR UPDATE), t AS ( SELECT seq, token, user_id, status, issued_at, activated_at, expires_at FROM queue_tokens WHERE token = (md5('t' || :n) || md5('u' || :n)) AND (SELECT count(*) FROM a) >= 0 FOR UPDATE) SELECT r.id, r.user_id, r.schedule_id, r.seat_id, r.seat_number, r.price, r.status, r.created_at, r.held_until, r.paid_at, COALESCE((SELECT balance FROM a), 0) AS balance, EXISTS (SELECT 1 FROM payments p WHERE p.token = (md5('t' || :n) || md5('u' || :n))) AS token_paid, t.seq AS t_seq, t.token AS t_token, t.user_id AS t_user_id, t.status AS t_status, t.issued_at AS t_issued_at, t.activated_at AS t_activated_at, t.expires_at AS t_expires_at FROM (SELECT) AS one LEFT JOIN r ON TRUE LEFT JOIN t ON TRUE \gset f_
WITH r AS ( UPDATE reservations SET status = 'PAID', paid_at = now() WHERE id = :r_id::uuid AND status = 'HELD' RETURNING id), a AS ( UPDATE accounts SET balance = balance - :f_price WHERE user_id = lpad(to_hex(:n::bigint), 32, '0')::uuid AND balance >= :f_price AND balance - :f_price = (:f_balance::bigint - :f_price::bigint) AND EXISTS (SELECT 1 FROM r) RETURNING balance), p AS ( INSERT INTO payments (id, reservation_id, user_id, amount, balance_after, paid_at, token) SELECT gen_random_uuid(), r.id, lpad(to_hex(:n::bigint), 32, '0')::uuid, :f_price, (:f_balance::bigint - :f_price::bigint), now(), (md5('t' || :n) || md5('u' || :n)) FROM r, a RETURNING id), l AS ( INSERT INTO ledger_entries (id, user_id, kind, amount, balance_after, at, payment_id, reservation_id) SELECT gen_random_uuid(), lpad(to_hex(:n::bigint), 32, '0')::uuid, 'PAYMENT', (-:f_price::bigint), (:f_balance::bigint - :f_price::bigint), now(), p.id, :r_id::uuid FROM p RETURNING id), t AS ( UPDATE queue_tokens SET status = 'EXPIRED', expires_at = now() WHERE token = (md5('t' || :n) || md5('u' || :n)) AND status = 'ACTIVE' AND EXISTS (SELECT 1 FROM l)), k AS ( UPDATE idempotency_keys SET status = NULL::int, body = NULL::text, ledger_entry_id = l.id FROM l WHERE user_id = NULL::uuid AND key = NULL::text RETURNING 1) SELECT (SELECT count(*) FROM l) AS settled, (SELECT count(*) FROM k) AS recorded;
COMMIT;
