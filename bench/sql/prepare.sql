-- The bench data set, written straight into a freshly migrated database (psql -v ...).
--
-- Every id is a pure function of small integers (schema `bench` below), so the wrk data files
-- and the pgbench scripts address the same rows without passing lists around:
--   user n -> bench.uid(n), token of user n -> bench.tok(n) (at seq bench.seq(n) in the line),
--   schedule s -> bench.sched(s), seat (s, number) -> bench.seat(s, number), prepared
--   reservation of user n -> bench.res(n).
--
-- Catalogue: :concerts concerts x :per_concert schedules x :seats seats. Schedule pools:
--   1..300 pay (a HELD reservation per pay user), 301..700 reserve via HTTP, 701..900 reserve
--   via pgbench, 901..1000 the purchase funnel; the seat map reads them all.
-- Users (each with an ACTIVE token unless said): 1..2000 browse; 10001..40000 pay via HTTP and
--   40001..70000 via pgbench (a HELD reservation and a balance each); 200001..220000 reserve
--   via HTTP and 300001..310000 via pgbench (at most MAX_HOLDS_PER_USER = 4 holds each over the
--   whole run: see bench/run.sh); 100001..110000 charge (no token); 1000001.. wait in line
--   (bench/sql/waiting.sql).
\set ON_ERROR_STOP on

CREATE SCHEMA bench;
-- Ids are the integer in hex (lpad(to_hex(n), 32, '0')::uuid): tables never share ids, so one
-- mapping serves them all, and pgbench can write the same expression inline. (SQL functions
-- would be inlined at every planning, a cost the server's own statements do not have.)
CREATE FUNCTION bench.id(n bigint) RETURNS uuid IMMUTABLE PARALLEL SAFE LANGUAGE sql
  AS $$ SELECT lpad(to_hex(n), 32, '0')::uuid $$;
CREATE FUNCTION bench.uid(n bigint) RETURNS uuid IMMUTABLE PARALLEL SAFE LANGUAGE sql
  AS $$ SELECT bench.id(n) $$;
CREATE FUNCTION bench.concert(c bigint) RETURNS uuid IMMUTABLE PARALLEL SAFE LANGUAGE sql
  AS $$ SELECT bench.id(c) $$;
CREATE FUNCTION bench.sched(s bigint) RETURNS uuid IMMUTABLE PARALLEL SAFE LANGUAGE sql
  AS $$ SELECT bench.id(s) $$;
CREATE FUNCTION bench.seat(s bigint, num bigint) RETURNS uuid IMMUTABLE PARALLEL SAFE LANGUAGE sql
  AS $$ SELECT bench.id(s * 1000 + num) $$;
CREATE FUNCTION bench.res(n bigint) RETURNS uuid IMMUTABLE PARALLEL SAFE LANGUAGE sql
  AS $$ SELECT bench.id(n) $$;
-- The seq of user n's token in the bench's line (gapless, from 1): the users with an ACTIVE
-- token below in the order of their ids (bench/run.sh ACTIVE_USERS, which bench/redisq.py
-- `active` writes in the same order), then the line's WAITING users from 1000001 on
-- (bench/sql/waiting.sql, bench/redisq.py `waiting`), appended in the order of their ids
-- before any other token is issued. NULL for a user the bench gives no token.
CREATE FUNCTION bench.seq(n bigint) RETURNS bigint IMMUTABLE PARALLEL SAFE LANGUAGE sql
  AS $$ SELECT CASE WHEN n BETWEEN 1 AND 2000 THEN n
                    WHEN n BETWEEN 10001 AND 70000 THEN n - 8000
                    WHEN n BETWEEN 200001 AND 220000 THEN n - 138000
                    WHEN n BETWEEN 300001 AND 310000 THEN n - 218000
                    WHEN n > 1000000 THEN n - 908000 END $$;
-- 64 lower-case hex digits, the shape of the server's own tokens: 24 random-looking bytes
-- (md5('t' n) and the first half of md5('u' n)) and the token's seq, 8 bytes big-endian, as
-- the Redis store's values carry it (crates/adapters-redis, src/keys.rs: the value names its
-- record), so a value exported from here addresses the same token on either store
-- (bench/redisq.py `tok` computes the same values). PostgreSQL keeps it as opaque text.
-- The pgbench scripts spell the same expression (TOK in crates/adapters-postgres/src/pgbench.rs).
CREATE FUNCTION bench.tok(n bigint) RETURNS text IMMUTABLE PARALLEL SAFE LANGUAGE sql
  AS $$ SELECT md5('t' || n) || left(md5('u' || n), 16) || lpad(to_hex(bench.seq(n)), 16, '0') $$;
-- Stops a bench script with `msg` (ON_ERROR_STOP): the data would not be what the files say.
CREATE FUNCTION bench.fail(msg text) RETURNS void LANGUAGE plpgsql
  AS $$ BEGIN RAISE EXCEPTION 'bench: %', msg; END $$;

BEGIN;
INSERT INTO concerts (id, title, artist, venue)
SELECT bench.concert(c), 'Bench Tour ' || c, 'Artist ' || c, 'Hall ' || (c % 17)
FROM generate_series(1, :concerts) c;

INSERT INTO schedules (id, concert_id, starts_at)
SELECT bench.sched(s), bench.concert((s - 1) / :per_concert + 1),
       date_trunc('day', now()) + ((s % 90) + 7) * interval '1 day' + interval '19 hours'
FROM generate_series(1, :concerts * :per_concert) s;

INSERT INTO seats (id, schedule_id, number, price)
SELECT bench.seat(s, num), bench.sched(s), num, 50000 + (num % 5) * 25000
FROM generate_series(1, :concerts * :per_concert) s, generate_series(1, :seats) num;

-- ACTIVE tokens, admitted long enough ago that the cursor is past them.
INSERT INTO queue_tokens (seq, token, user_id, status, issued_at, activated_at, expires_at)
SELECT bench.seq(n), bench.tok(n), bench.uid(n), 'ACTIVE',
       now() - interval '1 minute', now(), now() + interval '1 hour'
FROM (SELECT generate_series(1, 2000) AS n UNION ALL SELECT generate_series(10001, 70000)
      UNION ALL SELECT generate_series(200001, 220000) UNION ALL SELECT generate_series(300001, 310000)) u;
-- bench.seq numbers them 1.. in the order of their ids, gapless (each value carries its seq).
DO $$ BEGIN
  IF (SELECT count(*) <> max(seq) OR count(*) <> count(DISTINCT seq) FROM queue_tokens) THEN
    PERFORM bench.fail('bench.seq does not number the ACTIVE users 1.. gapless');
  END IF;
END $$;

-- A HELD reservation per pay user: user 10001 + i holds seat (1 + i % 300, 1 + i / 300).
INSERT INTO reservations (id, user_id, schedule_id, seat_id, seat_number, price, status, created_at, held_until)
SELECT bench.res(n), bench.uid(n), s.schedule_id, s.id, s.number, s.price, 'HELD', now(), now() + interval '1 hour'
FROM generate_series(10001, 70000) n
JOIN seats s ON s.id = bench.seat(1 + (n - 10001) % 300, 1 + (n - 10001) / 300);

INSERT INTO accounts (user_id, balance) SELECT bench.uid(n), 1000000 FROM generate_series(10001, 70000) n;
INSERT INTO ledger_entries (id, user_id, kind, amount, balance_after, at)
SELECT gen_random_uuid(), bench.uid(n), 'CHARGE', 1000000, 1000000, now() FROM generate_series(10001, 70000) n;

-- The line starts after the prepared ACTIVE tokens; an admission tick just ran, so the next
-- one is a whole interval away.
UPDATE queue_admission SET admitted_through = (SELECT max(seq) FROM queue_tokens), last_admission_at = now();
COMMIT;
ANALYZE;
