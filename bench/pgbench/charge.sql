-- Generated from the PostgreSQL adapter's statements by crates/adapters-postgres/src/pgbench.rs;
-- do not edit: UPDATE_PGBENCH=1 cargo test -p adapters-postgres --lib pgbench
-- POST /users/{id}/balance/charge without a key: AccountStore::credit, one autocommit
-- statement, over the same users as wrk.
\set n 100001 + random(0, 9999)
-- POST /users/{id}/balance/charge
WITH a AS ( INSERT INTO accounts AS a (user_id, balance) SELECT lpad(to_hex(:n::bigint), 32, '0')::uuid, 1000 WHERE 1000 <= 10000000000 ON CONFLICT (user_id) DO UPDATE SET balance = a.balance + EXCLUDED.balance WHERE a.balance + EXCLUDED.balance <= 10000000000 RETURNING a.balance), l AS ( INSERT INTO ledger_entries (id, user_id, kind, amount, balance_after, at) SELECT gen_random_uuid(), lpad(to_hex(:n::bigint), 32, '0')::uuid, 'CHARGE', 1000, a.balance, now() FROM a RETURNING balance_after) SELECT (SELECT balance_after FROM l) AS credited, (SELECT balance FROM accounts WHERE user_id = lpad(to_hex(:n::bigint), 32, '0')::uuid) AS seen;
