DROP INDEX reservations_held_by_user;
DROP TABLE idempotency_keys;
DROP TABLE queue_settings;
ALTER TABLE payments DROP COLUMN token;
CREATE TABLE queue_counter (
    id       boolean PRIMARY KEY DEFAULT TRUE CHECK (id),
    last_seq bigint NOT NULL CHECK (last_seq >= 0)
);
INSERT INTO queue_counter (id, last_seq) SELECT TRUE, COALESCE(max(seq), 0) FROM queue_tokens;
