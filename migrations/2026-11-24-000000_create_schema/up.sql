-- The whole schema of the concert ticketing service.
--
-- Rules are decided in the domain; the constraints below are the second line that makes a
-- broken adapter fail loudly instead of corrupting data. Times are timestamptz and always come
-- from the application's clock (never now()), so tests with a manual clock behave the same here
-- as in memory.

CREATE TABLE concerts (
    id     uuid PRIMARY KEY,
    title  text NOT NULL,
    artist text NOT NULL,
    venue  text NOT NULL
);
CREATE INDEX concerts_title ON concerts (title);

CREATE TABLE schedules (
    id         uuid PRIMARY KEY,
    concert_id uuid NOT NULL REFERENCES concerts (id),
    starts_at  timestamptz NOT NULL
);
CREATE INDEX schedules_concert_starts ON schedules (concert_id, starts_at);

CREATE TABLE seats (
    id          uuid PRIMARY KEY,
    schedule_id uuid NOT NULL REFERENCES schedules (id),
    number      integer NOT NULL CHECK (number > 0),
    price       bigint NOT NULL CHECK (price > 0),
    UNIQUE (schedule_id, number)
);

CREATE TABLE reservations (
    id          uuid PRIMARY KEY,
    user_id     uuid NOT NULL,
    schedule_id uuid NOT NULL REFERENCES schedules (id),
    seat_id     uuid NOT NULL REFERENCES seats (id),
    seat_number integer NOT NULL CHECK (seat_number > 0),
    price       bigint NOT NULL CHECK (price > 0),
    status      text NOT NULL CHECK (status IN ('HELD', 'PAID', 'EXPIRED')),
    created_at  timestamptz NOT NULL,
    held_until  timestamptz NOT NULL,
    paid_at     timestamptz,
    CHECK ((status = 'PAID') = (paid_at IS NOT NULL))
);
-- At most one live claim per seat: the conflict target of the hold INSERT.
CREATE UNIQUE INDEX reservations_one_live_per_seat ON reservations (seat_id) WHERE status IN ('HELD', 'PAID');
-- Availability counts per schedule read only live claims.
CREATE INDEX reservations_live_by_schedule ON reservations (schedule_id) WHERE status IN ('HELD', 'PAID');
-- The hold-release sweep reads only HELD rows by deadline.
CREATE INDEX reservations_held_until ON reservations (held_until) WHERE status = 'HELD';

-- One row per user ever charged; a missing row reads as balance 0.
CREATE TABLE accounts (
    user_id uuid PRIMARY KEY,
    balance bigint NOT NULL CHECK (balance >= 0 AND balance <= 10000000000)
);

CREATE TABLE payments (
    id             uuid PRIMARY KEY,
    -- One payment per reservation, whatever the adapter does.
    reservation_id uuid NOT NULL UNIQUE REFERENCES reservations (id),
    user_id        uuid NOT NULL,
    amount         bigint NOT NULL CHECK (amount > 0),
    balance_after  bigint NOT NULL CHECK (balance_after >= 0),
    paid_at        timestamptz NOT NULL
);

CREATE TABLE ledger_entries (
    id             uuid PRIMARY KEY,
    -- Insertion order. Entries of one user are inserted while their account row is locked, so
    -- this is the order in which the balance changed (timestamps from several app instances
    -- need not be).
    entry_no       bigint GENERATED ALWAYS AS IDENTITY UNIQUE,
    user_id        uuid NOT NULL REFERENCES accounts (user_id),
    kind           text NOT NULL CHECK (kind IN ('CHARGE', 'PAYMENT')),
    amount         bigint NOT NULL CHECK (amount <> 0),
    balance_after  bigint NOT NULL CHECK (balance_after >= 0),
    at             timestamptz NOT NULL,
    payment_id     uuid REFERENCES payments (id),
    reservation_id uuid REFERENCES reservations (id),
    CHECK ((kind = 'CHARGE') = (amount > 0))
);
CREATE INDEX ledger_entries_user ON ledger_entries (user_id, entry_no);

CREATE TABLE queue_tokens (
    -- Gapless issue number from queue_counter: the order of the line.
    seq          bigint PRIMARY KEY CHECK (seq > 0),
    token        text NOT NULL UNIQUE,
    user_id      uuid NOT NULL,
    status       text NOT NULL CHECK (status IN ('WAITING', 'ACTIVE', 'EXPIRED')),
    issued_at    timestamptz NOT NULL,
    activated_at timestamptz,
    expires_at   timestamptz,
    CHECK (status <> 'ACTIVE' OR (activated_at IS NOT NULL AND expires_at IS NOT NULL))
);
-- One place in line per user.
CREATE UNIQUE INDEX queue_tokens_one_live_per_user ON queue_tokens (user_id) WHERE status IN ('WAITING', 'ACTIVE');
-- The expiry sweep and the optional ACTIVE cap read only ACTIVE rows by deadline.
CREATE INDEX queue_tokens_active_expiry ON queue_tokens (expires_at) WHERE status = 'ACTIVE';

-- Single-row tables: `id` is the constant TRUE so a second row cannot exist.
CREATE TABLE queue_counter (
    id       boolean PRIMARY KEY DEFAULT TRUE CHECK (id),
    -- Highest seq ever issued. Updating this row in the issuing transaction serialises issuers,
    -- so commit order is seq order and a rolled-back issue gives its number back.
    last_seq bigint NOT NULL CHECK (last_seq >= 0)
);
INSERT INTO queue_counter (id, last_seq) VALUES (TRUE, 0);

CREATE TABLE queue_admission (
    id                boolean PRIMARY KEY DEFAULT TRUE CHECK (id),
    -- Every token with seq <= admitted_through has been admitted (position = seq - this).
    admitted_through  bigint NOT NULL CHECK (admitted_through >= 0),
    -- When the last tick that admitted anything ran (NULL: never).
    last_admission_at timestamptz
);
INSERT INTO queue_admission (id, admitted_through, last_admission_at) VALUES (TRUE, 0, NULL);
