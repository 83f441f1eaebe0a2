-- Group-commit issue, a token pays once, idempotent retries, live settings, the hold limit.
--
-- Times still come from the application's clock, except where the design says otherwise:
-- admission and token expiry are timed on this server's clock (clock_timestamp() /
-- statement_timestamp()) so that instances whose clocks disagree admit at most N per
-- interval; tests inject a manual clock as the store's clock instead (the adapter binds it).

-- Token issue no longer updates one counter row per arrival (a hot row that serialised every
-- issue and bloated without vacuum). Issues are numbered in batches, under a transaction-level
-- advisory lock held to commit, from max(seq) read off the primary key index: still gapless
-- and in commit order, with one lock per batch instead of one row version per arrival.
DROP TABLE queue_counter;

-- A token pays once: the payment records the token that paid, under a unique constraint (the
-- second line behind the per-token lock the payment takes). Payments made before this
-- migration have no token (NULL; UNIQUE allows any number of NULLs).
ALTER TABLE payments ADD COLUMN token text UNIQUE;

-- The waiting room's live settings, one row; no row means "the starting values from the
-- configuration" (the adapter answers those until an operator changes something).
CREATE TABLE queue_settings (
    id                    boolean PRIMARY KEY DEFAULT TRUE CHECK (id),
    paused                boolean NOT NULL,
    admit_batch           integer NOT NULL CHECK (admit_batch > 0),
    -- Durations in microseconds, the precision of the domain's times.
    admit_interval_micros bigint NOT NULL CHECK (admit_interval_micros > 0),
    active_ttl_micros     bigint NOT NULL CHECK (active_ttl_micros > 0),
    max_active            integer CHECK (max_active > 0)
);

-- Records of requests made with an Idempotency-Key, scoped to the user. A row is inserted (the
-- claim) in the same transaction as the effect, before it, and completed with the response and
-- the ledger entry of the effect before commit; a refused or failed request rolls the claim
-- back, so a committed row always has all three (the CHECK), and every record points at the
-- effect it answers for (the foreign key): no record without its effect.
CREATE TABLE idempotency_keys (
    user_id         uuid NOT NULL,
    key             text NOT NULL CHECK (length(key) BETWEEN 1 AND 255),
    fingerprint     text NOT NULL,
    status          integer CHECK (status BETWEEN 100 AND 599),
    body            text,
    ledger_entry_id uuid REFERENCES ledger_entries (id),
    created_at      timestamptz NOT NULL,
    expires_at      timestamptz NOT NULL,
    PRIMARY KEY (user_id, key),
    CHECK ((status IS NULL) = (body IS NULL) AND (status IS NULL) = (ledger_entry_id IS NULL))
);
-- The purge sweep reads records by deadline.
CREATE INDEX idempotency_keys_expiry ON idempotency_keys (expires_at);

-- The hold limit counts one user's live holds (HELD, held_until > now) on every hold.
CREATE INDEX reservations_held_by_user ON reservations (user_id, held_until) WHERE status = 'HELD';
