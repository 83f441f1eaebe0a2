-- Back to the single line: the rooms' tokens, cursors and rooms go; `main` keeps its own.
DELETE FROM operator_log WHERE action IN ('room.create', 'room.update');
ALTER TABLE operator_log DROP CONSTRAINT operator_log_action_check;
ALTER TABLE operator_log ADD CONSTRAINT operator_log_action_check
    CHECK (action IN ('queue.update', 'concert.create', 'schedule.create'));

DROP TABLE queue_draw_positions;
DROP TABLE room_concerts;
DROP TABLE rooms;

DELETE FROM queue_admission WHERE room <> 'main';
ALTER TABLE queue_admission DROP CONSTRAINT queue_admission_pkey;
ALTER TABLE queue_admission
    DROP COLUMN room,
    DROP COLUMN draw_at,
    DROP COLUMN draw_entrants,
    DROP COLUMN draw_seed,
    DROP COLUMN abandoned,
    ADD COLUMN id boolean NOT NULL DEFAULT TRUE CHECK (id);
ALTER TABLE queue_admission ALTER COLUMN admitted_through DROP DEFAULT;
ALTER TABLE queue_admission ADD CONSTRAINT queue_admission_pkey PRIMARY KEY (id);

DELETE FROM queue_tokens WHERE room <> 'main';
DROP INDEX queue_tokens_active_expiry;
CREATE INDEX queue_tokens_active_expiry ON queue_tokens (expires_at) WHERE status = 'ACTIVE';
DROP INDEX queue_tokens_one_live_per_user;
CREATE UNIQUE INDEX queue_tokens_one_live_per_user ON queue_tokens (user_id) WHERE status IN ('WAITING', 'ACTIVE');
ALTER TABLE queue_tokens DROP CONSTRAINT queue_tokens_pkey;
ALTER TABLE queue_tokens ADD CONSTRAINT queue_tokens_pkey PRIMARY KEY (seq);
ALTER TABLE queue_tokens
    DROP CONSTRAINT queue_tokens_reason_only_expired,
    DROP COLUMN expired_reason,
    DROP COLUMN last_seen_at,
    DROP COLUMN room;
