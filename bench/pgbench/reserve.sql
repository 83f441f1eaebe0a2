-- POST /reservations: authorize + ReservationStore::hold. Seat i of the pool is
-- (schedule :sbase + i % :nsched, number :numbase + (i / :nsched) % :nseats); user 1 + i % 2000.
\set k :k + 1
\set i :offset + :client_id + :k * :clients
\set n 1 + :i % 2000
\set s :sbase + :i % :nsched
\set num :numbase + (:i / :nsched) % :nseats
\set seat :s * 1000 + :num
SELECT t.seq, t.token, t.user_id, t.status, t.issued_at, t.activated_at, t.expires_at
  FROM queue_tokens t WHERE t.token = (md5('t' || :n) || md5('u' || :n));
BEGIN;
UPDATE reservations SET status = 'EXPIRED'
  WHERE seat_id = lpad(to_hex(:seat::bigint), 32, '0')::uuid AND status = 'HELD' AND held_until <= now();
\set inserted 0
INSERT INTO reservations (id, user_id, schedule_id, seat_id, seat_number, price, status, created_at, held_until, paid_at)
  SELECT gen_random_uuid(), lpad(to_hex(:n::bigint), 32, '0')::uuid, s.schedule_id, s.id, s.number, s.price, 'HELD', now(),
         now() + interval '300 seconds', NULL
  FROM seats s JOIN schedules sc ON sc.id = s.schedule_id
  WHERE s.id = lpad(to_hex(:seat::bigint), 32, '0')::uuid AND s.schedule_id = lpad(to_hex(:s::bigint), 32, '0')::uuid AND sc.starts_at > now()
  ON CONFLICT (seat_id) WHERE status IN ('HELD', 'PAID') DO NOTHING
  RETURNING id, user_id, schedule_id, seat_id, seat_number, price, status, created_at, held_until, paid_at,
            1 AS inserted \aset
\if :inserted = 0
SELECT EXISTS (SELECT 1 FROM seats s JOIN schedules sc ON sc.id = s.schedule_id
               WHERE s.id = lpad(to_hex(:seat::bigint), 32, '0')::uuid AND s.schedule_id = lpad(to_hex(:s::bigint), 32, '0')::uuid AND sc.starts_at > now()) AS flag;
\endif
COMMIT;
