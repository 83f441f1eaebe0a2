-- POST /payments: authorize + the PaymentUnitOfWork transaction of Ticketing::pay (locked read,
-- debit, then the four writes as one statement of data-modifying CTEs), for pay
-- user n = :base + i (its HELD reservation, its balance).
\set k :k + 1
\set n :base + :offset + :client_id + :k * :clients
SELECT t.seq, t.token, t.user_id, t.status, t.issued_at, t.activated_at, t.expires_at
  FROM queue_tokens t WHERE t.token = (md5('t' || :n) || md5('u' || :n));
BEGIN;
SELECT id, user_id, schedule_id, seat_id, seat_number, price, status, created_at, held_until, paid_at
  FROM reservations WHERE id = lpad(to_hex(:n::bigint), 32, '0')::uuid FOR UPDATE \gset r_
UPDATE accounts SET balance = balance - :r_price WHERE user_id = lpad(to_hex(:n::bigint), 32, '0')::uuid AND balance >= :r_price
  RETURNING balance \gset
WITH r AS (
       UPDATE reservations SET status = 'PAID', paid_at = now()
       WHERE id = lpad(to_hex(:n::bigint), 32, '0')::uuid AND status = 'HELD' RETURNING id),
     p AS (
       INSERT INTO payments (id, reservation_id, user_id, amount, balance_after, paid_at)
       SELECT gen_random_uuid(), r.id, lpad(to_hex(:n::bigint), 32, '0')::uuid, :r_price, :balance, now() FROM r RETURNING id),
     l AS (
       INSERT INTO ledger_entries (id, user_id, kind, amount, balance_after, at, payment_id, reservation_id)
       SELECT gen_random_uuid(), lpad(to_hex(:n::bigint), 32, '0')::uuid, 'PAYMENT', -:r_price::bigint, :balance, now(), p.id, lpad(to_hex(:n::bigint), 32, '0')::uuid FROM p RETURNING id),
     t AS (
       UPDATE queue_tokens SET status = 'EXPIRED', expires_at = now()
       WHERE user_id = lpad(to_hex(:n::bigint), 32, '0')::uuid AND status IN ('WAITING', 'ACTIVE'))
SELECT count(*) AS n FROM l;
COMMIT;
