-- POST /users/{id}/balance/charge: AccountStore::credit, one autocommit statement (the upsert
-- feeds its ledger entry through a data-modifying CTE), over the same users as wrk.
\set n 100001 + random(0, 9999)
WITH a AS (
       INSERT INTO accounts AS a (user_id, balance) SELECT lpad(to_hex(:n::bigint), 32, '0')::uuid, 1000 WHERE 1000 <= 10000000000
       ON CONFLICT (user_id) DO UPDATE SET balance = a.balance + EXCLUDED.balance
       WHERE a.balance + EXCLUDED.balance <= 10000000000
       RETURNING a.balance),
     l AS (
       INSERT INTO ledger_entries (id, user_id, kind, amount, balance_after, at)
       SELECT gen_random_uuid(), lpad(to_hex(:n::bigint), 32, '0')::uuid, 'CHARGE', 1000, a.balance, now() FROM a
       RETURNING balance_after)
SELECT (SELECT balance_after FROM l) AS credited,
       (SELECT balance FROM accounts WHERE user_id = lpad(to_hex(:n::bigint), 32, '0')::uuid) AS seen;
