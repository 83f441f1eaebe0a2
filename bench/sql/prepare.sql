-- The bench data set, written straight into a freshly migrated database (psql -v ...).
--
-- Every id is a pure function of small integers (schema `bench` below), so the wrk data files
-- and the pgbench scripts address the same rows without passing lists around:
--   user n -> bench.uid(n), token of user n -> bench.tok(n), schedule s -> bench.sched(s),
--   seat (s, number) -> bench.seat(s, number), prepared reservation of user n -> bench.res(n).
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
-- 64 lower-case hex digits, the shape of the server's own tokens, random-looking like them.
CREATE FUNCTION bench.tok(n bigint) RETURNS text IMMUTABLE PARALLEL SAFE LANGUAGE sql
  AS $$ SELECT md5('t' || n) || md5('u' || n) $$;

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
SELECT row_number() OVER (ORDER BY n), bench.tok(n), bench.uid(n), 'ACTIVE',
       now() - interval '1 minute', now(), now() + interval '1 hour'
FROM (SELECT generate_series(1, 2000) AS n UNION ALL SELECT generate_series(10001, 70000)
      UNION ALL SELECT generate_series(200001, 220000) UNION ALL SELECT generate_series(300001, 310000)) u;

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
