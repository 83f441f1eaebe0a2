-- Back to the last sight on the token's row.
ALTER TABLE queue_tokens ADD COLUMN last_seen_at timestamptz;

UPDATE queue_tokens t SET last_seen_at = s.seen_at
  FROM queue_sights s WHERE s.room = t.room AND s.token = t.token;

DROP TABLE queue_sights;
