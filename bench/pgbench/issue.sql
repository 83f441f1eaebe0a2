-- POST /queue/tokens for a new user: Ticketing::issue_token = QueueStore::issue + cursor().
\set k :k + 1
\set n :base + :offset + :client_id + :k * :clients
BEGIN;
SELECT t.seq, t.token, t.user_id, t.status, t.issued_at, t.activated_at, t.expires_at
  FROM queue_tokens t WHERE t.user_id = lpad(to_hex(:n::bigint), 32, '0')::uuid AND t.status IN ('WAITING', 'ACTIVE');
UPDATE queue_counter SET last_seq = last_seq + 1 RETURNING last_seq AS seq \gset
INSERT INTO queue_tokens AS t (seq, token, user_id, status, issued_at)
  VALUES (:seq, (md5('t' || :n) || md5('u' || :n)), lpad(to_hex(:n::bigint), 32, '0')::uuid, 'WAITING', now())
  ON CONFLICT (user_id) WHERE status IN ('WAITING', 'ACTIVE') DO NOTHING
  RETURNING t.seq, t.token, t.user_id, t.status, t.issued_at, t.activated_at, t.expires_at;
COMMIT;
SELECT admitted_through, last_admission_at FROM queue_admission;
