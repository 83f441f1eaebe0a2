-- Rooms' lines for the rooms phases (psql -v lines="('r001', 10000, 60), ..."): for each
-- (room, count, seconds ago), `count` WAITING tokens issued that long ago, seq 1..count in the
-- room's own line, and the room's cursor row as its first issue makes it (nothing admitted).
-- Token n of room R: bench.rtok(R, n) = R '.' md5(R 't' n) || first half of md5(R 'u' n) || n
-- (8 bytes big-endian), 24 random-looking bytes and the token's seq in hex, the shape of the
-- server's values, which the Redis store reads its record's place from (bench/rooms.py
-- computes the same values); user bench.uid(5000000 + n), so a user waits in several rooms,
-- one place in each.
--
-- As in waiting.sql, the token index is rebuilt once after the load (a sort) rather than fed
-- millions of random inserts. The rooms themselves are created through the operator API.
\set ON_ERROR_STOP on
CREATE OR REPLACE FUNCTION bench.rtok(room text, n bigint) RETURNS text IMMUTABLE PARALLEL SAFE LANGUAGE sql
  AS $$ SELECT room || '.' || md5(room || 't' || n) || left(md5(room || 'u' || n), 16) || lpad(to_hex(n), 16, '0') $$;
BEGIN;
SET LOCAL maintenance_work_mem = '256MB';
ALTER TABLE queue_tokens DROP CONSTRAINT queue_tokens_token_key;
INSERT INTO queue_tokens (room, seq, token, user_id, status, issued_at)
SELECT l.room, n, bench.rtok(l.room, n), bench.uid(5000000 + n), 'WAITING', now() - make_interval(secs => l.ago)
FROM (VALUES :lines) AS l(room, len, ago), generate_series(1, l.len) n;
ALTER TABLE queue_tokens ADD CONSTRAINT queue_tokens_token_key UNIQUE (token);
INSERT INTO queue_admission (room) SELECT l.room FROM (VALUES :lines) AS l(room, len, ago)
ON CONFLICT (room) DO NOTHING;
COMMIT;
