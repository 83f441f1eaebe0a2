-- GET /queue/token: QueueStore::find_with_cursor. The same tokens as the wrk data file:
-- users :base, :base + :step, ... (:count of them).
\set i random(0, :count - 1)
\set n :base + :i * :step
SELECT t.seq, t.token, t.user_id, t.status, t.issued_at, t.activated_at, t.expires_at,
       a.admitted_through, a.last_admission_at
  FROM queue_tokens t INNER JOIN queue_admission a ON a.id WHERE t.token = (md5('t' || :n) || md5('u' || :n));
