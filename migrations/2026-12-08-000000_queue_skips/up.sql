-- Abandonment without a write per skipped token.
--
-- An admission tick with `abandon_after` skips the absent WAITING tokens it meets before the
-- N-th present one. Writing each skipped token EXPIRED was a non-HOT update per row (status is
-- in the partial indexes' predicates) on a page of its own: in a drawn line of a million, a
-- tick that admits 100 and skips 900 touched ~3,000 random pages and, right after a
-- checkpoint, wrote ~2,900 full-page images (~110 ms). Now the tick writes only the admitted
-- tokens, moves the cursor over both, and records here the range of line positions it walked:
-- a token stored WAITING whose position (its drawn place in a drawn line, else its `seq`) is
-- at or below its line's `admitted_through` and in `(after, through]` of a row here is EXPIRED,
-- reason ABANDONED, `expires_at = at` (see `queue`: every read of a room's token derives it).
-- A skipped buyer who joins again gets a new token, and that write stores the old one as it
-- reads (one write per re-joining buyer).
CREATE TABLE queue_skips (
    room    text NOT NULL,
    -- The tick's range of positions, (after, through]: the cursor before and after it.
    after   bigint NOT NULL CHECK (after >= 0),
    through bigint NOT NULL,
    -- The tick's time: the skipped tokens' expires_at.
    at      timestamptz NOT NULL,
    PRIMARY KEY (room, through),
    CONSTRAINT queue_skips_range CHECK (through > after)
);
