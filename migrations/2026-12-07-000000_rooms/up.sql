-- Rooms: one waiting line per on-sale.
--
-- Every line keeps the contract the single line had, on its own: its own gapless `seq`, its
-- own cursor and admissions, one live token per user. `main` is the line there always was:
-- its tokens and its cursor row keep their values (the new `room` columns default to 'main'),
-- and its statements only gain a `room = 'main'` filter that the new indexes lead with.

-- Tokens: the line they wait in, their last sight (presence), and why they expired.
ALTER TABLE queue_tokens
    ADD COLUMN room           text NOT NULL DEFAULT 'main',
    -- The last note_seen (NULL: none since the issue); presence reads
    -- GREATEST(issued_at, last_seen_at).
    ADD COLUMN last_seen_at   timestamptz,
    ADD COLUMN expired_reason text CHECK (expired_reason IN ('TTL', 'PAID', 'ABANDONED')),
    ADD CONSTRAINT queue_tokens_reason_only_expired CHECK (expired_reason IS NULL OR status = 'EXPIRED');

-- Tokens that expired before this migration: a payment used them up, or their time ran out.
UPDATE queue_tokens t
   SET expired_reason = CASE WHEN EXISTS (SELECT 1 FROM payments p WHERE p.token = t.token) THEN 'PAID' ELSE 'TTL' END
 WHERE t.status = 'EXPIRED';

-- `seq` (the arrival number) is gapless per line. DEFERRABLE (checked at the end of each
-- statement unless a transaction defers it), so the draw can move the few entrants that
-- committed out of step at the opening in one UPDATE with the check deferred to its COMMIT.
-- Nothing references this key (payments name their token by value).
ALTER TABLE queue_tokens DROP CONSTRAINT queue_tokens_pkey;
ALTER TABLE queue_tokens ADD CONSTRAINT queue_tokens_pkey PRIMARY KEY (room, seq) DEFERRABLE INITIALLY IMMEDIATE;

-- One place per user per line (a user may wait in several rooms at once).
DROP INDEX queue_tokens_one_live_per_user;
CREATE UNIQUE INDEX queue_tokens_one_live_per_user ON queue_tokens (room, user_id) WHERE status IN ('WAITING', 'ACTIVE');
-- The expiry sweep and the optional ACTIVE cap, per line.
DROP INDEX queue_tokens_active_expiry;
CREATE INDEX queue_tokens_active_expiry ON queue_tokens (room, expires_at) WHERE status = 'ACTIVE';

-- The cursor, per line: `main`'s row keeps its values; another line's row is made by its first
-- issue (or its draw). It also records the line's draw and how many tokens were skipped as
-- abandoned.
ALTER TABLE queue_admission
    ADD COLUMN room           text NOT NULL DEFAULT 'main',
    ADD COLUMN draw_at        timestamptz,
    ADD COLUMN draw_entrants  bigint CHECK (draw_entrants >= 0),
    -- The u64 seed, its 64 bits stored as a bigint.
    ADD COLUMN draw_seed      bigint,
    ADD COLUMN abandoned      bigint NOT NULL DEFAULT 0 CHECK (abandoned >= 0),
    ADD CONSTRAINT queue_admission_draw_whole
        CHECK ((draw_at IS NULL) = (draw_entrants IS NULL) AND (draw_at IS NULL) = (draw_seed IS NULL));
ALTER TABLE queue_admission DROP CONSTRAINT queue_admission_pkey;
ALTER TABLE queue_admission DROP COLUMN id;
ALTER TABLE queue_admission ADD CONSTRAINT queue_admission_pkey PRIMARY KEY (room);
ALTER TABLE queue_admission ALTER COLUMN admitted_through SET DEFAULT 0;
ALTER TABLE queue_admission ALTER COLUMN room DROP DEFAULT;

-- A drawn line's order. The draw makes the entrants the first P arrivals (stored `seq`
-- 1..=P) and writes here the drawn place of each (`position`, the line's `seq` as the domain
-- reads it); arrivals after P keep their stored `seq` as their place. Rewriting `seq` in
-- queue_tokens instead would be one non-HOT update per entrant, with an entry in every index of
-- that table: minutes for a pre-queue of a million. Reads of a room's tokens join this table
-- in the statement that reads the token and the cursor, so they see the draw whole or not at
-- all.
CREATE TABLE queue_draw_positions (
    room     text NOT NULL,
    arrival  bigint NOT NULL CHECK (arrival > 0),
    position bigint NOT NULL CHECK (position > 0),
    PRIMARY KEY (room, arrival)
);
-- Admission finds the tokens at the next places.
CREATE UNIQUE INDEX queue_draw_positions_place ON queue_draw_positions (room, position);

-- The rooms other than `main` (whose settings stay in queue_settings). Durations in
-- microseconds, like queue_settings.
CREATE TABLE rooms (
    id                    text PRIMARY KEY CHECK (id ~ '^[a-z0-9][a-z0-9-]{0,62}$' AND id <> 'main'),
    name                  text NOT NULL,
    opens_at              timestamptz,
    prequeue_opens_at     timestamptz CHECK (prequeue_opens_at IS NULL OR opens_at IS NOT NULL),
    draw_at_open          boolean NOT NULL,
    abandon_after_micros  bigint CHECK (abandon_after_micros > 0),
    closed                boolean NOT NULL,
    paused                boolean NOT NULL,
    admit_batch           integer NOT NULL CHECK (admit_batch > 0),
    admit_interval_micros bigint NOT NULL CHECK (admit_interval_micros > 0),
    active_ttl_micros     bigint NOT NULL CHECK (active_ttl_micros > 0),
    max_active            integer CHECK (max_active > 0),
    created_at            timestamptz NOT NULL
);

-- A concert is in at most one room other than `main` (the primary key): of two concurrent
-- creations or updates taking one concert, one inserts and the other meets the conflict.
CREATE TABLE room_concerts (
    concert_id uuid PRIMARY KEY REFERENCES concerts (id),
    room_id    text NOT NULL REFERENCES rooms (id)
);
CREATE INDEX room_concerts_room ON room_concerts (room_id);

ALTER TABLE operator_log DROP CONSTRAINT operator_log_action_check;
ALTER TABLE operator_log ADD CONSTRAINT operator_log_action_check
    CHECK (action IN ('queue.update', 'concert.create', 'schedule.create', 'room.create', 'room.update'));
