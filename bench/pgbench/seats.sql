-- GET /schedules/{id}/seats: authorize (QueueStore::find) + CatalogueStore::seats. The same
-- (user, schedule) pairs as the wrk data file.
\set i random(0, 9999)
\set n 1 + :i % 2000
\set s 1 + (:i * 7) % :schedules
SELECT t.seq, t.token, t.user_id, t.status, t.issued_at, t.activated_at, t.expires_at
  FROM queue_tokens t WHERE t.token = (md5('t' || :n) || md5('u' || :n));
SELECT EXISTS (SELECT schedules.id, schedules.concert_id, schedules.starts_at
                 FROM schedules WHERE schedules.id = lpad(to_hex(:s::bigint), 32, '0')::uuid);
SELECT s.id, s.schedule_id, s.number, s.price, r.id AS reservation_id, r.status, r.held_until
  FROM seats s
  LEFT JOIN reservations r ON r.seat_id = s.id AND r.status IN ('HELD', 'PAID')
  WHERE s.schedule_id = lpad(to_hex(:s::bigint), 32, '0')::uuid ORDER BY s.number;
