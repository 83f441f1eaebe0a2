-- POST /users/{id}/balance/charge: AccountStore::credit, over the same users as wrk.
\set n 100001 + random(0, 9999)
BEGIN;
INSERT INTO accounts AS a (user_id, balance) SELECT lpad(to_hex(:n::bigint), 32, '0')::uuid, 1000 WHERE 1000 <= 10000000000
  ON CONFLICT (user_id) DO UPDATE SET balance = a.balance + EXCLUDED.balance
  WHERE a.balance + EXCLUDED.balance <= 10000000000
  RETURNING a.balance \gset
INSERT INTO ledger_entries (id, user_id, kind, amount, balance_after, at, payment_id, reservation_id)
  VALUES (gen_random_uuid(), lpad(to_hex(:n::bigint), 32, '0')::uuid, 'CHARGE', 1000, :balance, now(), NULL, NULL);
COMMIT;
