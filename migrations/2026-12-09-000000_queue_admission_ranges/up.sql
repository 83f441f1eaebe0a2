-- Admission without a write per admitted token: every tick is one record.
--
-- A tick used to write each token it admitted ACTIVE, one non-HOT update per row under the
-- line's issue lock: a tick of 100,000 stopped token issue for its whole length, and its cost
-- grew with N. Now a tick moves the cursor and records the range of line positions it passed,
-- `(after, through]`, at its time `at`, as one row here; the table of skips (a tick with
-- `abandon_after`, 2026-12-08) becomes the table of every such range. The state of a token the
-- cursor passed is derived from its range on every read (`queue` in the PostgreSQL adapter,
-- `admitted_join`), for a token stored WAITING only (stored state wins: an ACTIVE or EXPIRED
-- row reads as stored):
--
-- * a range with `expires_at` (a plain admission): ACTIVE, `activated_at = at`, that
--   `expires_at` (EXPIRED, reason TTL, once the clock reaches it, as any ACTIVE token);
-- * a range without (a tick that skipped absent buyers): EXPIRED, reason ABANDONED,
--   `expires_at = at`; the present buyers it admitted are stored ACTIVE, as before.
--
-- Use-up and expiry stay per-token facts: a payment and the expiry sweep write the token
-- EXPIRED (PAID, TTL) with the `activated_at`/`expires_at` it read. `swept_through` is how far
-- the sweep has gone through a range whose time is up, so it never reads a position twice.
ALTER TABLE queue_skips RENAME TO queue_admission_ranges;
ALTER TABLE queue_admission_ranges RENAME CONSTRAINT queue_skips_range TO queue_admission_ranges_range;
ALTER INDEX queue_skips_pkey RENAME TO queue_admission_ranges_pkey;
ALTER TABLE queue_admission_ranges
    -- The admitted tokens' expiry (`policy.expiry_for(at)`); NULL: a skipping tick's range.
    ADD COLUMN expires_at    timestamptz,
    -- Positions `(after, swept_through]` have been seen by the expiry sweep (the whole range
    -- for a skipping tick's: nothing in it expires by time).
    ADD COLUMN swept_through bigint;
UPDATE queue_admission_ranges SET swept_through = through;
ALTER TABLE queue_admission_ranges
    ALTER COLUMN swept_through SET NOT NULL,
    ADD CONSTRAINT queue_admission_ranges_expiry CHECK (expires_at IS NULL OR expires_at >= at),
    ADD CONSTRAINT queue_admission_ranges_swept CHECK (swept_through >= after AND swept_through <= through);

-- Every position a cursor passed gets a range: the plain admissions before this migration
-- wrote their tokens (stored ACTIVE or EXPIRED, which stay as stored), so each gap between the
-- skips, and above the last one up to the cursor, becomes one range at the line's last
-- admission with no time left (a token there still stored WAITING, which no tick ever left,
-- would read EXPIRED) and nothing to sweep.
WITH bounds AS (
    SELECT room, after, through FROM queue_admission_ranges
    UNION ALL
    SELECT room, admitted_through, admitted_through FROM queue_admission
), gaps AS (
    SELECT room, COALESCE(lag(through) OVER (PARTITION BY room ORDER BY through, after), 0) AS lo, after AS hi
    FROM bounds
)
INSERT INTO queue_admission_ranges (room, after, through, at, expires_at, swept_through)
SELECT g.room, g.lo, g.hi, COALESCE(a.last_admission_at, now()), COALESCE(a.last_admission_at, now()), g.hi
FROM gaps g JOIN queue_admission a ON a.room = g.room
WHERE g.hi > g.lo;

-- The expiry sweep takes the ranges whose time is up and that it has not finished, oldest
-- first; the count of ACTIVE tokens (a cap, the operator's stats) reads the unexpired ones.
-- Both are ranges not yet swept (a range is swept only after its time is up).
CREATE INDEX queue_admission_ranges_unswept ON queue_admission_ranges (room, expires_at)
    WHERE expires_at IS NOT NULL AND swept_through < through;
