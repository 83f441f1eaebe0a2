-- POST /queue/tokens for a new user: QueueStore::issue (the live-token read, then numbering and
-- insert in one autocommit statement under the counter row's lock). The cursor the response
-- needs comes from the server's poll cache (one read per 250 ms per instance), so it is not here.
\set k :k + 1
\set n :base + :offset + :client_id + :k * :clients
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
