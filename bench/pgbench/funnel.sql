-- One whole purchase, as the HTTP funnel makes it: issue, one poll, the seat map, reserve,
-- charge, pay, for a new user :base + i who takes seat i of the funnel pool (schedules
-- :sbase.., :nseats seats each). Admission itself is the scheduler's (one UPDATE a second
-- for everyone), not per-user work, so it is not here; nor are the polls the server answers
-- from its cache (this counts one uncached poll).
\set k :k + 1
\set i :offset + :client_id + :k * :clients
\set n :base + :i
\set s :sbase + :i % :nsched
\set num 1 + (:i / :nsched) % :nseats
\set seat :s * 1000 + :num
-- POST /queue/tokens
SELECT t.seq, t.token, t.user_id, t.status, t.issued_at, t.activated_at, t.expires_at
  FROM queue_tokens t WHERE t.user_id = lpad(to_hex(:n::bigint), 32, '0')::uuid AND t.status IN ('WAITING', 'ACTIVE');
WITH n AS (SELECT last_seq FROM queue_counter FOR UPDATE),
     t AS (
       INSERT INTO queue_tokens AS t (seq, token, user_id, status, issued_at)
       SELECT n.last_seq + 1, (md5('t' || :n) || md5('u' || :n)), lpad(to_hex(:n::bigint), 32, '0')::uuid, 'WAITING', now() FROM n
       ON CONFLICT (user_id) WHERE status IN ('WAITING', 'ACTIVE') DO NOTHING
       RETURNING t.seq, t.token, t.user_id, t.status, t.issued_at, t.activated_at, t.expires_at),
     c AS (UPDATE queue_counter SET last_seq = t.seq FROM t)
SELECT t.seq, t.token, t.user_id, t.status, t.issued_at, t.activated_at, t.expires_at FROM t;
-- GET /queue/token
SELECT t.seq, t.token, t.user_id, t.status, t.issued_at, t.activated_at, t.expires_at,
       a.admitted_through, a.last_admission_at
  FROM queue_tokens t INNER JOIN queue_admission a ON a.id WHERE t.token = (md5('t' || :n) || md5('u' || :n));
-- GET /schedules/{id}/seats
SELECT t.seq, t.token, t.user_id, t.status, t.issued_at, t.activated_at, t.expires_at
  FROM queue_tokens t WHERE t.token = (md5('t' || :n) || md5('u' || :n));
SELECT s.id, sc.id AS schedule_id, s.number, s.price, r.id AS reservation_id, r.status, r.held_until
  FROM schedules sc
  LEFT JOIN seats s ON s.schedule_id = sc.id
  LEFT JOIN reservations r ON r.seat_id = s.id AND r.status IN ('HELD', 'PAID')
  WHERE sc.id = lpad(to_hex(:s::bigint), 32, '0')::uuid ORDER BY s.number;
-- POST /reservations
SELECT t.seq, t.token, t.user_id, t.status, t.issued_at, t.activated_at, t.expires_at
  FROM queue_tokens t WHERE t.token = (md5('t' || :n) || md5('u' || :n));
WITH src AS (
       SELECT s.schedule_id, s.id, s.number, s.price
       FROM seats s JOIN schedules sc ON sc.id = s.schedule_id
       WHERE s.id = lpad(to_hex(:seat::bigint), 32, '0')::uuid AND s.schedule_id = lpad(to_hex(:s::bigint), 32, '0')::uuid
         AND sc.starts_at > now()),
     ins AS (
       INSERT INTO reservations (id, user_id, schedule_id, seat_id, seat_number, price, status, created_at, held_until, paid_at)
       SELECT gen_random_uuid(), lpad(to_hex(:n::bigint), 32, '0')::uuid, src.schedule_id, src.id, src.number, src.price,
              'HELD', now(), now() + interval '300 seconds', NULL FROM src
       ON CONFLICT (seat_id) WHERE status IN ('HELD', 'PAID') DO NOTHING
       RETURNING id, user_id, schedule_id, seat_id, seat_number, price, status, created_at, held_until, paid_at)
SELECT ins.id AS rid, ins.price, EXISTS (SELECT 1 FROM src) AS bookable,
       EXISTS (SELECT 1 FROM reservations r WHERE r.seat_id = lpad(to_hex(:seat::bigint), 32, '0')::uuid
               AND r.status IN ('HELD', 'PAID') AND (r.status = 'PAID' OR r.held_until > now())) AS claimed
  FROM (SELECT) AS one LEFT JOIN ins ON TRUE \gset r_
-- POST /users/{id}/balance/charge
WITH a AS (
       INSERT INTO accounts AS a (user_id, balance) SELECT lpad(to_hex(:n::bigint), 32, '0')::uuid, 300000 WHERE 300000 <= 10000000000
       ON CONFLICT (user_id) DO UPDATE SET balance = a.balance + EXCLUDED.balance
       WHERE a.balance + EXCLUDED.balance <= 10000000000
       RETURNING a.balance),
     l AS (
       INSERT INTO ledger_entries (id, user_id, kind, amount, balance_after, at)
       SELECT gen_random_uuid(), lpad(to_hex(:n::bigint), 32, '0')::uuid, 'CHARGE', 300000, a.balance, now() FROM a
       RETURNING balance_after)
SELECT (SELECT balance_after FROM l) AS credited,
       (SELECT balance FROM accounts WHERE user_id = lpad(to_hex(:n::bigint), 32, '0')::uuid) AS seen;
-- POST /payments
SELECT t.seq, t.token, t.user_id, t.status, t.issued_at, t.activated_at, t.expires_at
  FROM queue_tokens t WHERE t.token = (md5('t' || :n) || md5('u' || :n));
BEGIN;
SELECT id, user_id, schedule_id, seat_id, seat_number, price, status, created_at, held_until, paid_at
  FROM reservations WHERE id = :r_rid FOR UPDATE \gset p_
UPDATE accounts SET balance = balance - :p_price WHERE user_id = lpad(to_hex(:n::bigint), 32, '0')::uuid AND balance >= :p_price
  RETURNING balance \gset
WITH r AS (
       UPDATE reservations SET status = 'PAID', paid_at = now()
       WHERE id = :r_rid AND status = 'HELD' RETURNING id),
     p AS (
       INSERT INTO payments (id, reservation_id, user_id, amount, balance_after, paid_at)
       SELECT gen_random_uuid(), r.id, lpad(to_hex(:n::bigint), 32, '0')::uuid, :p_price, :balance, now() FROM r RETURNING id),
     l AS (
       INSERT INTO ledger_entries (id, user_id, kind, amount, balance_after, at, payment_id, reservation_id)
       SELECT gen_random_uuid(), lpad(to_hex(:n::bigint), 32, '0')::uuid, 'PAYMENT', -:p_price::bigint, :balance, now(), p.id, :r_rid FROM p RETURNING id),
     t AS (
       UPDATE queue_tokens SET status = 'EXPIRED', expires_at = now()
       WHERE user_id = lpad(to_hex(:n::bigint), 32, '0')::uuid AND status IN ('WAITING', 'ACTIVE'))
SELECT count(*) AS n FROM l;
COMMIT;
