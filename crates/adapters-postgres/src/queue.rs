//! The waiting lines: lookups with the position cursor, admission (recorded once per tick, with
//! abandonment) on the store's clock, the draw (its order kept beside the tokens: `order`),
//! presence, batched expiry, stats. Issue is in `issue` (group commit).
//!
//! Every line (`main`'s and each room's) is the rows of `queue_tokens` with its `room` and its
//! row of `queue_admission`; every statement here is filtered by the line of the store it runs
//! for ([`Line`], `PgStore::line`), and leads with it in the indexes (`(room, seq)`,
//! `(room, user_id)`, `(room, expires_at)`), so `main` keeps the keys it always had.
//!
//! # Admission writes no token
//!
//! An admission tick moves its line's cursor and records the range of places it passed,
//! `(after, through]`, at its time `at`, as one row of `queue_admission_ranges`; a token's
//! status, `activatedAt` and `expiresAt` are then derived from its place and that range on
//! every read ([`admitted_join`], the only statement of the rule). A token stored WAITING
//! whose place (its drawn position in a drawn line, else its `seq`) is at or below the cursor
//! reads:
//!
//! - in a plain admission's range (it has `expires_at`): ACTIVE, `activated_at` the range's
//!   `at`, `expires_at` the range's (`policy.expiry_for(at)`); past it, EXPIRED, reason TTL,
//!   as `QueueToken::status_at` reads any ACTIVE token whose time is up;
//! - in a skipping tick's range (no `expires_at`, `abandon_after`): EXPIRED, reason
//!   ABANDONED, `expires_at` the range's `at`.
//!
//! A token stored ACTIVE or EXPIRED reads as stored: stored state wins whenever it is not
//! WAITING (the present tokens a skipping tick admits, tokens admitted before the ranges, and
//! every token once a per-token fact was written). The lookup is one probe of the ranges'
//! `(room, through)` key, made only for a token stored WAITING at or below the cursor, so a
//! read of any other token costs what it did. Every read of a token joins it: [`FIND_TOKEN`]
//! (authorization in `main`), [`FIND_WITH_CURSOR`] and [`FIND_WITH_CURSOR_ROOM`] (polls and a
//! room's `find`), `issue::ISSUE_LIVE*` (a re-join), [`USE_UP`] and `payments::FACTS`.
//!
//! What is written, and when:
//!
//! - **Admission** (no `abandon_after`): under the line's admission lock, read the cursor and
//!   the counts ([`ADMIT_READ`]) and decide N; then take the line's issue lock and, in one
//!   statement ([`ADMIT_RECORD`]), read the line's highest `seq` and insert the range and move
//!   the cursor: two rows, whatever N. The issue lock is held only from that statement to the
//!   COMMIT right after it. It is still needed there: a batch of issues reads the cursor under
//!   that lock and answers positions from it, so the cursor may only move between batches, and
//!   the count of the waiting the tick admits from must include every batch committed before
//!   (see `locks::ADMISSION_BEGIN`): the statement bounds the tick by the `max(seq)` it reads
//!   under the lock, so a batch committed while the tick read its counts is counted.
//! - **Admission with `abandon_after`** walks the line token by token (presence is per
//!   token), under both locks for its length as before: it writes the present tokens ACTIVE
//!   and records its range without `expires_at`, so the absent ones it skipped read ABANDONED.
//! - **Use-up** ([`USE_UP`], and a payment's settlement in `payments`) writes the token
//!   EXPIRED, reason PAID, with the `activated_at` it read: per token, once (the write checks
//!   the stored status it read again, so of two racing writers one changes the row).
//! - **Expiry** of a token stored ACTIVE ([`EXPIRE_TOKENS`]) writes it EXPIRED, reason TTL.
//!   Expiry of the tokens a range admitted ([`EXPIRE_RANGE`]) writes none of them: the sweep
//!   moves the range's `swept_through` mark (oldest range first, once its time is up), and
//!   every token stored WAITING at a place at or below the mark reads EXPIRED, reason TTL
//!   ([`admitted_join`]); it counts them for the tick's report and the metric. A payment that
//!   read its token ACTIVE an instant before the mark passed still writes its use-up (stored
//!   state wins), and may be counted as expired as well: the token still pays once.
//!   Why: a sweep that wrote each token cost a non-HOT row write per admitted buyer, so with
//!   admission at 100,000 a second it could never keep up, and the writes it did took
//!   PostgreSQL from the requests (polls stalled 100-800 ms behind it in the bench).
//! - **A re-join** writes the user's old token as it reads when that frees their place in the
//!   one-live-token-per-user-per-line index (EXPIRED, TTL or ABANDONED): one write per
//!   re-joining buyer.
//!
//! The counts: waiting is `issued_through - admitted_through` as before; active (a cap,
//! [`STATS`]) counts the tokens stored ACTIVE and unexpired plus those stored WAITING in a
//! plain admission's range that is not yet expired (bounded by the cap when there is one);
//! abandoned is the cursor row's count. Presence ([`NOTE_SEEN`]) leaves tokens the cursor
//! passed alone; the draw comes before any admission of its line.
//!
//! Why: a tick wrote one non-HOT row per admitted token (status is in the partial indexes'
//! predicates), under the issue lock, so a tick of 100,000 stopped token issue for its whole
//! length and cost grew with N; before that, writing each skipped token EXPIRED cost a tick of
//! a drawn line of a million ~110 ms of full-page images. Now a tick costs the same for N = 1
//! and N = 100,000 (with a cap, its count of the ACTIVE reads the tokens still ACTIVE, as it
//! did: at most the cap, but now from the heap for those a range admitted), and the per-token
//! writes left are the facts only a token has: a payment, an expiry.

use std::sync::Arc;
use std::time::{Duration, Instant};

use diesel::connection::SimpleConnection as _;
use diesel::prelude::*;
use diesel::sql_types::{Array, BigInt, Bool, Int4, Nullable, Text, Timestamptz};
use domain::ids::UserId;
use domain::ports::{IssueOutcome, QueueLines, QueueStore, StoreError};
use domain::queue::{
    AdmissionOutcome, AdmissionPolicy, DrawRecord, ExpiredReason, QueueCursor, QueueStats, QueueToken, TokenStatus,
    TokenValue,
};
use domain::room::{drawn_positions, DrawOutcome, RoomId};
use time::OffsetDateTime;
use uuid::Uuid;

use crate::error::{corrupt, Fail};
use crate::locks;
use crate::order::Order;
use crate::schema::queue_tokens;
use crate::sql::prepared;
use crate::PgStore;

/// The line a store's queue port serves: its room, and the statements that take its locks.
#[derive(Debug)]
pub(crate) struct Line {
    pub(crate) room: RoomId,
    key: i32,
    pub(crate) issue_begin: String,
    pub(crate) admission_begin: String,
    pub(crate) admission_walk_begin: String,
}

impl Line {
    pub(crate) fn new(room: RoomId) -> Self {
        let key = locks::room_key(&room);
        Self {
            room,
            key,
            issue_begin: locks::issue_begin(key),
            admission_begin: locks::admission_begin(key),
            admission_walk_begin: locks::admission_walk_begin(key),
        }
    }

    /// The room id as bound into the statements.
    pub(crate) fn name(&self) -> &str {
        self.room.as_str()
    }

    /// Whether `value` is a token of this line (the value names its room).
    pub(crate) fn holds(&self, value: &TokenValue) -> bool {
        value.is_in(&self.room)
    }
}

/// The lines of the rooms other than `main`, each a [`PgStore`] sharing the pool and the issue
/// batcher of the one it was made from.
#[derive(Debug, Clone)]
pub(crate) struct PgLines {
    pub(crate) store: PgStore,
}

impl QueueLines for PgLines {
    fn line(&self, room: &RoomId) -> Arc<dyn QueueStore> {
        Arc::new(self.store.line(room))
    }
}

/// How long a draw waits for the line's admission lock (another instance's draw of the line
/// may hold it while it places a long pre-queue), and bounds each of its statements and the whole draw.
const DRAW_WAIT: Duration = Duration::from_secs(120);

#[derive(Debug, QueryableByName)]
#[diesel(table_name = queue_tokens, check_for_backend(diesel::pg::Pg))]
pub(crate) struct TokenRow {
    seq: i64,
    token: String,
    user_id: Uuid,
    status: String,
    issued_at: OffsetDateTime,
    activated_at: Option<OffsetDateTime>,
    expires_at: Option<OffsetDateTime>,
    expired_reason: Option<String>,
}

impl TokenRow {
    pub(crate) fn into_domain(self) -> Result<QueueToken, StoreError> {
        Ok(QueueToken {
            value: TokenValue::parse(&self.token).map_err(|_| corrupt("queue_tokens.token"))?,
            user_id: UserId::from_uuid(self.user_id),
            seq: self.seq,
            status: self.status.parse::<TokenStatus>().map_err(|_| corrupt("queue_tokens.status"))?,
            issued_at: self.issued_at,
            activated_at: self.activated_at,
            expires_at: self.expires_at,
            expired_reason: self
                .expired_reason
                .map(|r| r.parse::<ExpiredReason>().map_err(|_| corrupt("queue_tokens.expired_reason")))
                .transpose()?,
        })
    }
}

/// A room's token's place in its line: the drawn position of an entrant of a drawn line (see
/// `order`), else its stored `seq`; over `queue_tokens t` and
/// `LEFT JOIN queue_draw_positions d ON d.room = t.room AND d.arrival = t.seq`.
macro_rules! line_position {
    () => {
        "COALESCE(d.position, t.seq)"
    };
}
pub(crate) use line_position;

/// A token's last sight in line: its issue or its latest sight noted by `note_seen`, whichever
/// is later (`AdmissionPolicy::is_present` reads it); over `queue_tokens t` and [`sights_join`].
macro_rules! last_seen {
    () => {
        "GREATEST(t.issued_at, s.seen_at)"
    };
}

/// The sight of token `t`, if any (`s`): the rows of `queue_sights` (see [`NOTE_SEEN`]). One
/// probe of its key per token walked, whatever the planner thinks of the table: a lateral
/// sub-select with a `LIMIT` is never flattened into a join, so a table filled since its last
/// `ANALYZE` (the buyers of a new line) is not hashed whole for each step of the walk.
macro_rules! sights_join {
    () => {
        "LEFT JOIN LATERAL (SELECT q.seen_at FROM queue_sights q \
           WHERE q.room = t.room AND q.token = t.token LIMIT 1) s ON true"
    };
}

/// A token's place in `main`'s line, never drawn: its stored `seq`.
macro_rules! main_position {
    () => {
        "t.seq"
    };
}
pub(crate) use main_position;

/// Derived admission, the one statement of its rule (see the module docs): a token `t` stored
/// WAITING whose place (the tokens given: [`line_position`] or [`main_position`]) is at or
/// below its line's `admitted_through` (`a`) and inside `(after, through]` of a row of
/// `queue_admission_ranges` was passed by that tick: with the range's `expires_at` it was
/// admitted (ACTIVE, `activated_at` the range's `at`, that `expires_at`; EXPIRED, reason TTL,
/// once the expiry sweep's `swept_through` mark reached its place, [`EXPIRE_RANGE`]), without
/// it skipped (EXPIRED, reason ABANDONED, `expires_at` the range's `at`). Joins `k` (`k.status`,
/// `k.activated_at`, `k.expires_at`, `k.reason`), all NULL for every other token. The ranges
/// of a line never overlap (the cursor only moves forward), so the first one ending at or above
/// the place is the only one that can hold it: one probe of the `(room, through)` key, made only
/// for a token stored WAITING at or below the cursor (a one-time filter of the lateral): a token
/// stored ACTIVE or EXPIRED, or one still in line, reads no further than before.
macro_rules! admitted_join {
    ($($position:tt)+) => {
        concat!(
            "LEFT JOIN LATERAL (SELECT r.after, \
               CASE WHEN r.expires_at IS NULL OR r.swept_through >= ",
            $($position)+,
            " THEN 'EXPIRED' ELSE 'ACTIVE' END AS status, \
               CASE WHEN r.expires_at IS NOT NULL THEN r.at END AS activated_at, \
               COALESCE(r.expires_at, r.at) AS expires_at, \
               CASE WHEN r.expires_at IS NULL THEN 'ABANDONED' WHEN r.swept_through >= ",
            $($position)+,
            " THEN 'TTL' END AS reason \
             FROM queue_admission_ranges r WHERE t.status = 'WAITING' AND ",
            $($position)+,
            " <= a.admitted_through AND r.room = t.room AND r.through >= ",
            $($position)+,
            " ORDER BY r.through LIMIT 1) k ON k.after < ",
            $($position)+
        )
    };
}
pub(crate) use admitted_join;

/// The columns of a token as [`TokenRow`] reads them, over [`admitted_join`]: its place in the
/// line (the tokens given) as `seq`, and the state its range derives over the stored one.
macro_rules! derived_token_columns {
    ($($position:tt)+) => {
        concat!(
            $($position)+,
            " AS seq, t.token, t.user_id, COALESCE(k.status, t.status) AS status, t.issued_at, \
             COALESCE(k.activated_at, t.activated_at) AS activated_at, \
             COALESCE(k.expires_at, t.expires_at) AS expires_at, \
             COALESCE(k.reason, t.expired_reason) AS expired_reason"
        )
    };
}
pub(crate) use derived_token_columns;

/// A token of `main` with everything it is read with: its line's cursor `a` and its range `k`
/// ([`admitted_join`]). `main` is never drawn: its stored `seq` is its place.
macro_rules! main_token_from {
    () => {
        concat!(
            "queue_tokens t JOIN queue_admission a ON a.room = t.room ",
            $crate::queue::admitted_join!($crate::queue::main_position!())
        )
    };
}
pub(crate) use main_token_from;

/// The columns of a token of `main`, from [`main_token_from`].
macro_rules! main_token_columns {
    () => {
        $crate::queue::derived_token_columns!($crate::queue::main_position!())
    };
}
pub(crate) use main_token_columns;

/// A room's token with everything it is read with: its line's cursor `a`, its drawn place `d`
/// and its range `k` ([`admitted_join`]).
macro_rules! room_token_from {
    () => {
        concat!(
            "queue_tokens t JOIN queue_admission a ON a.room = t.room \
             LEFT JOIN queue_draw_positions d ON d.room = t.room AND d.arrival = t.seq ",
            $crate::queue::admitted_join!($crate::queue::line_position!())
        )
    };
}
pub(crate) use room_token_from;

/// The columns of a room's token, from [`room_token_from`]: its place in the line as `seq`.
macro_rules! room_token_columns {
    () => {
        $crate::queue::derived_token_columns!($crate::queue::line_position!())
    };
}
pub(crate) use room_token_columns;

/// The tokens of line `$room` (with `$entrants` drawn entrants, 0 if none) at the places
/// `($after, $through]` *not* stored WAITING (written since: paid, expired, or stored ACTIVE
/// before admission by ranges), as a sub-select of their stored `seq`: the drawn places among
/// the entrants by the `(room, position)` index of the draw, the places past them by the
/// `queue_tokens_written` partial index (there, place and `seq` are one), so the count costs
/// what was written, not the range. Each argument is an SQL expression.
macro_rules! written_at_places {
    ($room:literal, $after:literal, $through:literal, $entrants:literal) => {
        $crate::queue::tokens_at_places!($room, $after, $through, $entrants, "t.status <> 'WAITING'")
    };
}
pub(crate) use written_at_places;

/// The tokens of line `$room` at the places `($after, $through]` whose stored state meets
/// `$state` (see [`written_at_places`]).
macro_rules! tokens_at_places {
    ($room:literal, $after:literal, $through:literal, $entrants:literal, $state:literal) => {
        concat!(
            "(SELECT t.seq FROM queue_draw_positions d JOIN queue_tokens t ON t.room = d.room AND t.seq = d.arrival \
               WHERE d.room = ",
            $room,
            " AND d.position > ",
            $after,
            " AND d.position <= LEAST(",
            $through,
            ", ",
            $entrants,
            ") AND ",
            $state,
            // One-time filters (they name no column of the tables scanned): a branch whose
            // places the range does not reach is not run at all. Without them the planner
            // walked every written token of `main` for each of its ranges, looking for drawn
            // places `main` never has.
            " AND ",
            $after,
            " < ",
            $entrants,
            " UNION ALL SELECT t.seq FROM queue_tokens t WHERE t.room = ",
            $room,
            " AND t.seq > GREATEST(",
            $after,
            ", ",
            $entrants,
            ") AND t.seq <= ",
            $through,
            " AND ",
            $state,
            " AND ",
            $through,
            " > ",
            $entrants,
            ")"
        )
    };
}
pub(crate) use tokens_at_places;

/// The ACTIVE tokens of line `$room` unexpired at `$now` (each argument an SQL expression;
/// `a` the line's cursor row): those stored ACTIVE, by the `(room, expires_at)` partial index,
/// and those stored WAITING in a plain admission's range not yet expired (a range is swept only
/// after its time is up, so these are among the unswept). The latter are counted by
/// subtraction: every place of a range holds one token (places are gapless), so a range holds
/// `through - after` less those written since ([`written_at_places`]: paid, or stored ACTIVE
/// before ranges). Counting the WAITING ones instead read every token of the range: with a
/// million admitted, each operator view and `/metrics` scrape took about a second of the
/// database's CPU.
macro_rules! active_count {
    ($room:literal, $now:literal) => {
        concat!(
            "((SELECT count(*) FROM queue_tokens t WHERE t.room = ",
            $room,
            " AND t.status = 'ACTIVE' AND t.expires_at > ",
            $now,
            ") + (SELECT COALESCE(sum(r.through - r.after - w.n), 0)::bigint FROM queue_admission_ranges r \
               CROSS JOIN LATERAL (SELECT count(*) AS n FROM ",
            $crate::queue::written_at_places!("r.room", "r.after", "r.through", "COALESCE(a.draw_entrants, 0)"),
            " x) w WHERE r.room = ",
            $room,
            " AND r.expires_at IS NOT NULL AND r.swept_through < r.through AND r.expires_at > ",
            $now,
            "))"
        )
    };
}

/// The columns of a cursor, as `CursorRow` reads them, from `queue_admission a`.
macro_rules! cursor_columns {
    () => {
        "a.admitted_through, a.last_admission_at, a.draw_at, a.draw_entrants, a.draw_seed"
    };
}
pub(crate) use cursor_columns;

/// The token with this value in line `$2`: every protected call's authorization in `main`
/// (never drawn: its stored `seq` is its place), its state derived from its admission's range
/// ([`admitted_join`]). A room's authorization reads [`FIND_WITH_CURSOR_ROOM`] (`find`).
pub(crate) const FIND_TOKEN: &str =
    concat!("SELECT ", main_token_columns!(), " FROM ", main_token_from!(), " WHERE t.token = $1 AND t.room = $2");

/// The token and its line's cursor, read together (the token's state derived from its range,
/// [`admitted_join`], in the same snapshot as the cursor): every poll in `main`.
pub(crate) const FIND_WITH_CURSOR: &str = concat!(
    "SELECT ",
    main_token_columns!(),
    ", ",
    cursor_columns!(),
    " FROM ",
    main_token_from!(),
    " WHERE t.token = $1 AND t.room = $2"
);

/// [`FIND_WITH_CURSOR`] in a room's line, which may be drawn: the token's place is its drawn
/// position when it has one (see `order`), and its state is derived from the range of the tick
/// that passed it ([`admitted_join`]), both read in the same snapshot as the cursor. Every
/// read of a room's token (poll, `find`, authorization) is this one.
pub(crate) const FIND_WITH_CURSOR_ROOM: &str = concat!(
    "SELECT ",
    room_token_columns!(),
    ", ",
    cursor_columns!(),
    " FROM ",
    room_token_from!(),
    " WHERE t.token = $1 AND t.room = $2"
);

/// The line's cursor (no row: the line has had no token yet).
pub(crate) const CURSOR: &str = concat!("SELECT ", cursor_columns!(), " FROM queue_admission a WHERE a.room = $1");

/// Admission's read, after the admission lock: the store's clock (`$1`, or the server's clock
/// *now*, after any wait for the lock), the cursor of line `$3`, its highest `seq` (every lower
/// one is committed: issue batches commit in order) and, when `$2`, its ACTIVE tokens
/// unexpired at that clock (`QueueToken::status_at`), stored or derived ([`active_count`]).
pub(crate) const ADMIT_READ: &str = concat!(
    "WITH clock AS MATERIALIZED (SELECT COALESCE($1::timestamptz, clock_timestamp()) AS now) \
     SELECT clock.now, COALESCE(a.admitted_through, 0) AS admitted_through, a.last_admission_at, \
       a.draw_at, a.draw_entrants, a.draw_seed, COALESCE(a.abandoned, 0) AS abandoned, \
       (SELECT COALESCE(max(seq), 0) FROM queue_tokens WHERE room = $3) AS issued_through, \
       CASE WHEN $2 THEN ",
    active_count!("$3", "clock.now"),
    " ELSE 0 END AS active \
     FROM clock LEFT JOIN queue_admission a ON a.room = $3"
);

/// The issue lock of a line, taken by admission right before it moves the cursor
/// ([`ADMIT_RECORD`]): `$1` the lock's first key, `$2` the line's.
pub(crate) const ADMIT_ISSUE_LOCK: &str = "SELECT pg_advisory_xact_lock($1, $2)";

/// Admission's write, under the line's issue lock (and after its admission lock): the tick
/// admits the next `$5` places of line `$4` above the cursor `$3`, or fewer if fewer were
/// issued: its range `($3, through]` is recorded at `$1` with the admitted tokens' expiry `$2`,
/// and the cursor moves to `through`. No token is written: every token stored WAITING in the
/// range reads ACTIVE from it ([`admitted_join`]). The highest `seq` is read here, under the
/// issue lock, so every batch of issues committed before the tick is counted and every one
/// after reads the moved cursor. Returns how many places the tick admitted; no row when it
/// admitted none (or the cursor was not at `$3`: nothing is written then).
pub(crate) const ADMIT_RECORD: &str =
    "WITH top AS (SELECT LEAST($3 + $5, (SELECT COALESCE(max(seq), 0) FROM queue_tokens WHERE room = $4)) AS through), \
     c AS (UPDATE queue_admission SET admitted_through = top.through, last_admission_at = $1 \
       FROM top WHERE room = $4 AND admitted_through = $3 AND top.through > $3 RETURNING top.through), \
     r AS (INSERT INTO queue_admission_ranges (room, after, through, at, expires_at, swept_through) \
       SELECT $4, $3, c.through, $1, $2, $3 FROM c RETURNING through) \
     SELECT r.through - $3 AS n FROM r";

/// [`ADMIT_WALK`] in a drawn line: the tokens of line `$1` at the stored `seq`s `$2`.
pub(crate) const ADMIT_WALK_LIST: &str = concat!(
    "SELECT t.seq, t.token, t.status, ",
    last_seen!(),
    " AS last_seen FROM queue_tokens t ",
    sights_join!(),
    " WHERE t.room = $1 AND t.seq = ANY($2)"
);

/// Admission with abandonment, step by step: the next `$3` tokens of line `$1` above `$2` in
/// line order (all WAITING: checked), each with its last sight, the later of its issue and its
/// last `note_seen` (`AdmissionPolicy::is_present` is then applied to it in Rust).
pub(crate) const ADMIT_WALK: &str = concat!(
    "SELECT t.seq, t.token, t.status, ",
    last_seen!(),
    " AS last_seen FROM queue_tokens t ",
    sights_join!(),
    " WHERE t.room = $1 AND t.seq > $2 ORDER BY t.seq LIMIT $3"
);

/// After a walk: the sights of the tokens it walked (`$2`, of line `$1`), which left the line
/// (admitted or skipped), are dropped, so the table holds about the line still waiting. A
/// sight a presence batch holds is left to it (SKIP LOCKED: the tick never waits for it).
pub(crate) const DROP_SIGHTS: &str = "WITH gone AS (SELECT q.ctid FROM unnest($2::text[]) AS v (token) \
       CROSS JOIN LATERAL (SELECT ctid FROM queue_sights \
         WHERE room = $1 AND token = v.token LIMIT 1 FOR UPDATE SKIP LOCKED) q) \
     DELETE FROM queue_sights s USING gone WHERE s.ctid = gone.ctid";

/// Admission with abandonment, the write: the tokens of line `$5` at the stored `seq`s `$3`
/// (the present ones, all WAITING) become ACTIVE; the skipped are not written (see the module
/// docs): the tick's range of places `($6, $4]` is recorded at `$1` without an expiry, which
/// makes every token still stored WAITING in it read EXPIRED, ABANDONED ([`admitted_join`]).
/// The cursor moves to `$4`, `last_admission_at` to `$1` when anyone was admitted, and the
/// line's abandoned count grows by the skipped (`$7`). Returns how many were activated.
pub(crate) const ADMIT_WRITE_PRESENT: &str = "WITH t AS (UPDATE queue_tokens \
       SET status = 'ACTIVE', activated_at = $1, expires_at = $2 \
       WHERE room = $5 AND seq = ANY($3) AND status = 'WAITING' RETURNING seq), \
     s AS (INSERT INTO queue_admission_ranges (room, after, through, at, swept_through) \
       VALUES ($5, $6, $4, $1, $4)), \
     c AS (SELECT count(*) AS n FROM t) \
     UPDATE queue_admission SET admitted_through = $4, \
       last_admission_at = CASE WHEN c.n > 0 THEN $1 ELSE last_admission_at END, \
       abandoned = abandoned + $7 \
     FROM c WHERE room = $5 RETURNING c.n";

/// At most `$2` tokens of line `$3` stored ACTIVE whose time is up at the store's clock
/// (`expires_at <= now`, restating `QueueToken::status_at`) become EXPIRED (TTL). SKIP
/// LOCKED: concurrent sweeps take disjoint rows, and a token a payment holds is left to it (or
/// to the next sweep), so each token changes once. The locked rows are chosen once, in a
/// materialized CTE: a sub-select the plan re-ran per row would skip the rows this statement
/// already changed and take the next ones, past the limit. The tokens admitted by a range are
/// [`EXPIRE_RANGE`]'s.
pub(crate) const EXPIRE_TOKENS: &str = "WITH due AS MATERIALIZED (SELECT seq FROM queue_tokens \
       WHERE room = $3 AND status = 'ACTIVE' AND expires_at <= COALESCE($1::timestamptz, statement_timestamp()) \
       ORDER BY expires_at LIMIT $2 FOR UPDATE SKIP LOCKED) \
     UPDATE queue_tokens t SET status = 'EXPIRED', expired_reason = 'TTL' FROM due \
     WHERE t.room = $3 AND t.seq = due.seq AND t.status = 'ACTIVE'";

/// One step of the sweep of derived ACTIVE tokens: the oldest range of line `$3` whose time is
/// up at the store's clock (`$1`) and that the sweep has not finished, locked (SKIP LOCKED:
/// concurrent sweeps take other ranges); its next `$2` places after `swept_through` expire:
/// the mark moves past them, and every token there still stored WAITING reads EXPIRED, reason
/// TTL, from then on ([`admitted_join`]; its time was already up, so `QueueToken::status_at`
/// read it EXPIRED before as well). No token is written: writing each would only copy what
/// its range says, at one non-HOT row per token. The step counts the tokens it expired: the
/// places minus the tokens written since (paid or re-joined), by the `queue_tokens_written`
/// index. No place is counted twice. Returns how many ranges it took (0: nothing left to
/// sweep) and how many tokens it expired.
pub(crate) const EXPIRE_RANGE: &str = concat!(
    "WITH r AS MATERIALIZED (SELECT r.room, r.through, r.swept_through \
       FROM queue_admission_ranges r \
       WHERE r.room = $3 AND r.expires_at IS NOT NULL AND r.swept_through < r.through \
         AND r.expires_at <= COALESCE($1::timestamptz, statement_timestamp()) \
       ORDER BY r.expires_at, r.through LIMIT 1 FOR UPDATE SKIP LOCKED), \
     span AS MATERIALIZED (SELECT r.room, r.through, r.swept_through AS after, \
         LEAST(r.through, r.swept_through + $2) AS upto, COALESCE(a.draw_entrants, 0) AS entrants \
       FROM r JOIN queue_admission a ON a.room = r.room), \
     moved AS (UPDATE queue_admission_ranges x SET swept_through = span.upto FROM span \
       WHERE x.room = span.room AND x.through = span.through RETURNING 1) \
     SELECT (SELECT count(*) FROM moved) AS ranges, \
       (SELECT COALESCE(sum(span.upto - span.after - w.n), 0)::bigint FROM span \
          CROSS JOIN LATERAL (SELECT count(*) AS n FROM ",
    written_at_places!("span.room", "span.after", "span.upto", "span.entrants"),
    " x) w) AS n"
);

/// Uses up the token with value `$1` of line `$3` at `$2`: if it reads ACTIVE (stored, or
/// derived from its range: [`admitted_join`]), it is written EXPIRED, reason PAID,
/// `expires_at = $2`, with the `activated_at` it read. The write checks the stored status it
/// read again (`t.status = m.stored`): of two racing use-ups, or a use-up racing the sweep or a
/// re-join, the one that waits finds the row changed and writes nothing, so it changes once.
macro_rules! use_up {
    ($from:expr, $columns:expr) => {
        concat!(
            "WITH m AS MATERIALIZED (SELECT t.seq AS arrival, t.status AS stored, ",
            $columns,
            " FROM ",
            $from,
            " WHERE t.token = $1 AND t.room = $3) \
             UPDATE queue_tokens t SET status = 'EXPIRED', expires_at = $2, expired_reason = 'PAID', \
               activated_at = m.activated_at \
             FROM m WHERE t.room = $3 AND t.seq = m.arrival AND m.status = 'ACTIVE' AND t.status = m.stored"
        )
    };
}

/// [`use_up`] in `main`.
pub(crate) const USE_UP: &str = use_up!(main_token_from!(), main_token_columns!());

/// [`use_up`] in a room's line.
pub(crate) const USE_UP_ROOM: &str = use_up!(room_token_from!(), room_token_columns!());

/// Counts for an operator at the store's clock: waiting is `issued_through - admitted_through`
/// (gapless `seq`, strict order), active counts unexpired ACTIVE tokens, stored or derived
/// ([`active_count`]); of line `$2`.
pub(crate) const STATS: &str = concat!(
    "WITH clock AS MATERIALIZED (SELECT COALESCE($1::timestamptz, statement_timestamp()) AS now) \
     SELECT clock.now, COALESCE(a.admitted_through, 0) AS admitted_through, a.last_admission_at, \
       a.draw_at, a.draw_entrants, a.draw_seed, COALESCE(a.abandoned, 0) AS abandoned, \
       (SELECT COALESCE(max(seq), 0) FROM queue_tokens WHERE room = $2) AS issued_through, ",
    active_count!("$2", "clock.now"),
    " AS active \
     FROM clock LEFT JOIN queue_admission a ON a.room = $2"
);

/// Presence: the tokens `$1` of line `$3` were seen at `$2`, in one statement; a last sight
/// only moves forward. Only tokens still in line are noted: stored WAITING above the cursor
/// (one stored WAITING at or below it was admitted or skipped, see [`admitted_join`]); the
/// tokens are read, not locked. The sights are upserted in token order, so two instances'
/// batches lock the rows they share in one order and cannot deadlock; the admission walk only
/// deletes sights with SKIP LOCKED ([`DROP_SIGHTS`]). Why a table of its own: see the migration
/// `queue_sights`.
pub(crate) const NOTE_SEEN: &str = concat!(
    "INSERT INTO queue_sights (room, token, seen_at) \
     SELECT DISTINCT $3, t.token, $2::timestamptz FROM queue_tokens t \
       JOIN unnest($1::text[]) AS v (token) ON t.token = v.token \
       JOIN queue_admission a ON a.room = t.room \
       LEFT JOIN queue_draw_positions d ON d.room = t.room AND d.arrival = t.seq \
       WHERE t.room = $3 AND t.status = 'WAITING' AND ",
    line_position!(),
    " > a.admitted_through \
       ORDER BY t.token \
     ON CONFLICT (room, token) DO UPDATE SET seen_at = EXCLUDED.seen_at \
       WHERE queue_sights.seen_at < EXCLUDED.seen_at"
);

/// The draw's read, after the line's admission lock: the store's clock (after any wait) and
/// the draw recorded for line `$2`, if any.
pub(crate) const DRAW_READ: &str =
    "WITH clock AS MATERIALIZED (SELECT COALESCE($1::timestamptz, clock_timestamp()) AS now) \
     SELECT clock.now, a.draw_at, a.draw_entrants, a.draw_seed \
     FROM clock LEFT JOIN queue_admission a ON a.room = $2";

/// The line `$1` against the opening `$2`: how many entrants (issued before it), the last of
/// them and the first later token by stored `seq` (arrival).
pub(crate) const DRAW_SHAPE: &str = "SELECT count(*) FILTER (WHERE issued_at < $2) AS entrants, \
       max(seq) FILTER (WHERE issued_at < $2) AS last_entrant, \
       min(seq) FILTER (WHERE issued_at >= $2) AS first_later \
     FROM queue_tokens WHERE room = $1";

/// The tokens of line `$1` from the stored `seq` `$3` through `$4` by arrival, split into the
/// entrants (issued before the opening `$2`) and the others.
pub(crate) const DRAW_WINDOW: &str =
    "SELECT COALESCE(array_agg(seq ORDER BY seq) FILTER (WHERE issued_at < $2), '{}') AS entrants, \
       COALESCE(array_agg(seq ORDER BY seq) FILTER (WHERE issued_at >= $2), '{}') AS later \
     FROM queue_tokens WHERE room = $1 AND seq >= $3 AND seq <= $4";

/// Lets the draw's moves swap `seq`s within one statement (checked at COMMIT).
const DEFER_SEQ: &str = "SET CONSTRAINTS queue_tokens_pkey DEFERRED";

/// The draw's moves: each token of line `$1` at `seq` `$2[i]` moves to `$3[i]`.
pub(crate) const DRAW_RENUMBER: &str = "UPDATE queue_tokens t SET seq = m.new \
     FROM unnest($2::bigint[], $3::bigint[]) AS m (old, new) WHERE t.room = $1 AND t.seq = m.old";

/// The draw's order: the entrants of line `$1` (stored `seq <= $2`, the first arrivals),
/// taken in the order of their values (byte-wise: `QueueStore::draw`), the `i`-th placed at
/// `$3[i]` (`room::drawn_positions`).
pub(crate) const DRAW_PLACES: &str = "INSERT INTO queue_draw_positions (room, arrival, position) \
     SELECT $1, e.seq, p.position \
     FROM (SELECT seq, row_number() OVER (ORDER BY token COLLATE \"C\") AS rank \
       FROM queue_tokens WHERE room = $1 AND seq <= $2) AS e \
     JOIN unnest($3::bigint[]) WITH ORDINALITY AS p (position, rank) ON p.rank = e.rank \
     ORDER BY e.seq";

/// Refreshes the planner's statistics of the drawn places (see the draw).
pub(crate) const ANALYZE_PLACES: &str = "ANALYZE queue_draw_positions";

/// Records the draw of line `$1` (making its cursor row if it had no token yet).
pub(crate) const DRAW_RECORD: &str =
    "INSERT INTO queue_admission (room, draw_at, draw_entrants, draw_seed) VALUES ($1, $2, $3, $4) \
     ON CONFLICT (room) DO UPDATE SET draw_at = EXCLUDED.draw_at, draw_entrants = EXCLUDED.draw_entrants, \
       draw_seed = EXCLUDED.draw_seed";

#[derive(Debug, QueryableByName)]
pub(crate) struct CursorRow {
    #[diesel(sql_type = BigInt)]
    admitted_through: i64,
    #[diesel(sql_type = Nullable<Timestamptz>)]
    last_admission_at: Option<OffsetDateTime>,
    #[diesel(sql_type = Nullable<Timestamptz>)]
    draw_at: Option<OffsetDateTime>,
    #[diesel(sql_type = Nullable<BigInt>)]
    draw_entrants: Option<i64>,
    #[diesel(sql_type = Nullable<BigInt>)]
    draw_seed: Option<i64>,
}

impl CursorRow {
    pub(crate) fn into_domain(self) -> QueueCursor {
        QueueCursor {
            admitted_through: self.admitted_through,
            last_admission_at: self.last_admission_at,
            epoch: 0,
            draw: draw_record(self.draw_at, self.draw_entrants, self.draw_seed),
        }
    }
}

/// A draw as stored (the seed's 64 bits in a bigint).
fn draw_record(at: Option<OffsetDateTime>, entrants: Option<i64>, seed: Option<i64>) -> Option<DrawRecord> {
    match (at, entrants, seed) {
        (Some(at), Some(entrants), Some(seed)) => {
            Some(DrawRecord { at, entrants: count(entrants), seed: u64::from_be_bytes(seed.to_be_bytes()) })
        }
        _ => None,
    }
}

/// The read of [`DRAW_READ`].
#[derive(Debug, QueryableByName)]
struct DrawRead {
    #[diesel(sql_type = Timestamptz)]
    now: OffsetDateTime,
    #[diesel(sql_type = Nullable<Timestamptz>)]
    draw_at: Option<OffsetDateTime>,
    #[diesel(sql_type = Nullable<BigInt>)]
    draw_entrants: Option<i64>,
    #[diesel(sql_type = Nullable<BigInt>)]
    draw_seed: Option<i64>,
}

/// The read of [`DRAW_SHAPE`].
#[derive(Debug, QueryableByName)]
struct DrawShape {
    #[diesel(sql_type = BigInt)]
    entrants: i64,
    #[diesel(sql_type = Nullable<BigInt>)]
    last_entrant: Option<i64>,
    #[diesel(sql_type = Nullable<BigInt>)]
    first_later: Option<i64>,
}

/// The read of [`DRAW_WINDOW`].
#[derive(Debug, QueryableByName)]
struct DrawTokens {
    #[diesel(sql_type = Array<BigInt>)]
    entrants: Vec<i64>,
    #[diesel(sql_type = Array<BigInt>)]
    later: Vec<i64>,
}

/// A row of [`ADMIT_WALK`].
#[derive(Debug, QueryableByName)]
struct WalkRow {
    #[diesel(sql_type = BigInt)]
    seq: i64,
    #[diesel(sql_type = Text)]
    token: String,
    #[diesel(sql_type = Text)]
    status: String,
    #[diesel(sql_type = Timestamptz)]
    last_seen: OffsetDateTime,
}

#[derive(Debug, QueryableByName)]
struct TokenWithCursor {
    #[diesel(embed)]
    token: TokenRow,
    #[diesel(embed)]
    cursor: CursorRow,
}

/// What admission and stats read.
#[derive(Debug, QueryableByName)]
struct QueueRead {
    #[diesel(sql_type = Timestamptz)]
    now: OffsetDateTime,
    #[diesel(embed)]
    cursor: CursorRow,
    #[diesel(sql_type = BigInt)]
    issued_through: i64,
    #[diesel(sql_type = BigInt)]
    active: i64,
    #[diesel(sql_type = BigInt)]
    abandoned: i64,
}

#[derive(Debug, QueryableByName)]
struct Count {
    #[diesel(sql_type = BigInt)]
    n: i64,
}

/// The most [`EXPIRE_RANGE`] steps one `expire_tokens` call takes.
const SWEEP_STEPS: usize = 32;

/// What one step of [`EXPIRE_RANGE`] did.
#[derive(Debug, QueryableByName)]
struct SweepStep {
    #[diesel(sql_type = BigInt)]
    ranges: i64,
    #[diesel(sql_type = BigInt)]
    n: i64,
}

fn count(n: i64) -> u64 {
    u64::try_from(n).unwrap_or(0)
}

impl QueueStore for PgStore {
    fn issue(&self, user: UserId, value: TokenValue, now: OffsetDateTime) -> Result<IssueOutcome, StoreError> {
        if !self.line.holds(&value) {
            return Err(StoreError::Internal(format!(
                "a token of another room issued in the line of {}",
                self.line.room
            )));
        }
        self.issuer.issue(&self.pool, self.limits, self.line.clone(), user, value, now)
    }

    fn find(&self, value: &TokenValue) -> Result<Option<QueueToken>, StoreError> {
        if !self.line.holds(value) {
            return Ok(None);
        }
        if !self.line.room.is_main() {
            // A room's line may be drawn: its token is placed by the draw read with it.
            return Ok(self.find_with_cursor(value)?.map(|(token, _)| token));
        }
        // `main` is never drawn (see `draw_line`): its stored `seq` is its place.
        let row: Option<TokenRow> = self.autocommit(|c| {
            prepared(FIND_TOKEN)
                .bind::<Text, _>(value.as_str())
                .bind::<Text, _>(self.line.name())
                .get_result(c)
                .optional()
        })?;
        row.map(TokenRow::into_domain).transpose()
    }

    fn find_with_cursor(&self, value: &TokenValue) -> Result<Option<(QueueToken, QueueCursor)>, StoreError> {
        if !self.line.holds(value) {
            return Ok(None);
        }
        let sql = if self.line.room.is_main() { FIND_WITH_CURSOR } else { FIND_WITH_CURSOR_ROOM };
        let row: Option<TokenWithCursor> = self.autocommit(|c| {
            prepared(sql).bind::<Text, _>(value.as_str()).bind::<Text, _>(self.line.name()).get_result(c).optional()
        })?;
        row.map(|r| Ok((r.token.into_domain()?, r.cursor.into_domain()))).transpose()
    }

    fn cursor(&self) -> Result<QueueCursor, StoreError> {
        let row: Option<CursorRow> =
            self.autocommit(|c| prepared(CURSOR).bind::<Text, _>(self.line.name()).get_result(c).optional())?;
        Ok(row.map(CursorRow::into_domain).unwrap_or_default())
    }

    fn admit(&self, policy: &AdmissionPolicy) -> Result<AdmissionOutcome, StoreError> {
        let started = Instant::now();
        let store_now = self.store_now();
        let room = self.line.name();
        // A tick that walks for presence holds the issue lock for its length; a plain one
        // only around its last statement (see `locks::ADMISSION_BEGIN`).
        let walks = policy.abandon_after.is_some();
        let begin = if walks { &self.line.admission_walk_begin } else { &self.line.admission_begin };
        let outcome = self.transaction(begin, started, |tx| {
            // Read after the lock, in a statement of its own: the snapshot sees the last tick's
            // commit, and the server's clock is read after any wait for the lock.
            let read: QueueRead = prepared(ADMIT_READ)
                .bind::<Nullable<Timestamptz>, _>(store_now)
                .bind::<Bool, _>(policy.max_active.is_some())
                .bind::<Text, _>(room)
                .get_result(tx.conn()?)?;
            let now = read.now;
            let cursor = read.cursor.into_domain();
            if !policy.is_due(cursor.last_admission_at, now) {
                let wait = policy.next_admission_at(cursor.last_admission_at, now) - now;
                return Ok(AdmissionOutcome::NotDue { wait });
            }
            let waiting = count(read.issued_through - cursor.admitted_through);
            let n = policy.quota(count(read.active), waiting);
            if n == 0 {
                return Ok(AdmissionOutcome::Admitted(0));
            }
            if walks {
                let order = Order::new(cursor.draw.map_or(0, |d| d.entrants));
                return admit_present(tx, room, order, policy, now, cursor.admitted_through, n);
            }
            // The quota without the count of the waiting: the record statement bounds it by
            // the tokens issued when it runs, under the issue lock (at least the `n` read).
            let quota = policy.quota(count(read.active), u64::MAX);
            prepared(ADMIT_ISSUE_LOCK)
                .bind::<Int4, _>(locks::ISSUE)
                .bind::<Int4, _>(self.line.key)
                .execute(tx.conn()?)?;
            let admitted: Option<Count> = prepared(ADMIT_RECORD)
                .bind::<Timestamptz, _>(now)
                .bind::<Timestamptz, _>(policy.expiry_for(now))
                .bind::<BigInt, _>(cursor.admitted_through)
                .bind::<Text, _>(room)
                .bind::<BigInt, _>(i64::try_from(quota).unwrap_or(i64::MAX))
                .get_result(tx.conn()?)
                .optional()?;
            let admitted = admitted.map_or(0, |c| count(c.n));
            if admitted < n || admitted > quota {
                // The cursor moved under the admission lock, or tokens read went missing.
                return Err(Fail::Store(StoreError::Internal(format!(
                    "admission above {} read {n} to admit and recorded {admitted}",
                    cursor.admitted_through
                ))));
            }
            Ok::<_, Fail<()>>(AdmissionOutcome::Admitted(admitted))
        })?;
        outcome.map_err(|()| StoreError::Internal("admission refused itself".into()))
    }

    fn expire_tokens(&self, limit: u32) -> Result<u64, StoreError> {
        let store_now = self.store_now();
        let limit = u64::from(limit);
        let stored = self.autocommit(|c| {
            prepared(EXPIRE_TOKENS)
                .bind::<Nullable<Timestamptz>, _>(store_now)
                .bind::<BigInt, _>(i64::try_from(limit).unwrap_or(i64::MAX))
                .bind::<Text, _>(self.line.name())
                .execute(c)
        })?;
        let mut n = u64::try_from(stored).unwrap_or(u64::MAX);
        // Then the derived ACTIVE tokens, range by range, until the limit or no range is left
        // (or a few steps went by: ranges whose tokens were all paid count none each).
        for _ in 0..SWEEP_STEPS {
            if n >= limit {
                break;
            }
            let step: SweepStep = self.autocommit(|c| {
                prepared(EXPIRE_RANGE)
                    .bind::<Nullable<Timestamptz>, _>(store_now)
                    .bind::<BigInt, _>(i64::try_from(limit - n).unwrap_or(i64::MAX))
                    .bind::<Text, _>(self.line.name())
                    .get_result(c)
            })?;
            n += count(step.n);
            if step.ranges == 0 {
                break;
            }
        }
        Ok(n)
    }

    fn use_up(&self, value: &TokenValue, at: OffsetDateTime) -> Result<(), StoreError> {
        if !self.line.holds(value) {
            return Ok(());
        }
        let sql = if self.line.room.is_main() { USE_UP } else { USE_UP_ROOM };
        self.autocommit(|c| {
            prepared(sql)
                .bind::<Text, _>(value.as_str())
                .bind::<Timestamptz, _>(at)
                .bind::<Text, _>(self.line.name())
                .execute(c)
        })
        .map(|_| ())
    }

    fn stats(&self) -> Result<QueueStats, StoreError> {
        let store_now = self.store_now();
        let read: QueueRead = self.autocommit(|c| {
            prepared(STATS).bind::<Nullable<Timestamptz>, _>(store_now).bind::<Text, _>(self.line.name()).get_result(c)
        })?;
        let cursor = read.cursor.into_domain();
        Ok(QueueStats {
            waiting: count(read.issued_through - cursor.admitted_through),
            active: count(read.active),
            issued_through: read.issued_through,
            cursor,
            now: read.now,
            abandoned: count(read.abandoned),
        })
    }

    fn ping(&self) -> Result<(), StoreError> {
        PgStore::ping(self)
    }

    fn draw(&self, opens_at: OffsetDateTime, seed: u64) -> Result<DrawOutcome, StoreError> {
        self.draw_line(opens_at, seed)
    }

    fn note_seen(&self, values: &[TokenValue], at: OffsetDateTime) -> Result<(), StoreError> {
        let ours: Vec<&str> = values.iter().filter(|v| self.line.holds(v)).map(TokenValue::as_str).collect();
        if ours.is_empty() {
            return Ok(());
        }
        self.write_alone(|c| {
            prepared(NOTE_SEEN)
                .bind::<Array<Text>, _>(&ours)
                .bind::<Timestamptz, _>(at)
                .bind::<Text, _>(self.line.name())
                .execute(c)
        })
        .map(|_| ())
    }
}

/// The next step of a walk that still misses `missing` present tokens after `walked` places
/// held `found`: the places that many more need at the presence seen so far, a quarter more,
/// and a few (or twice the places walked while nobody was present). Each place read in a
/// drawn line is a random page of the token table, so a second step sized like the first
/// (`walk_step`) read most of its rows for nothing: the tick that needs 1,100 places of a
/// million read 2,000.
fn next_walk_step(missing: u64, walked: u64, found: u64) -> i64 {
    let places = if found == 0 {
        walked.saturating_mul(2)
    } else {
        missing.saturating_mul(walked).div_ceil(found).saturating_mul(5) / 4 + 32
    };
    i64::try_from(places).unwrap_or(i64::MAX).clamp(64, 20_000)
}

/// How many tokens one step of the abandonment walk reads: enough for a tick that skips nine
/// absent tokens for every present one to walk its line in one or two round trips.
fn walk_step(n: u64) -> i64 {
    i64::try_from(n.saturating_mul(10)).unwrap_or(i64::MAX).clamp(256, 20_000)
}

/// Admission with [`AdmissionPolicy::abandon_after`], inside the admission transaction: walks
/// the WAITING tokens in line order from position `from` (the cursor), `policy.is_present`
/// deciding each from its last sight, until `n` present ones are found or the line ends; the
/// absent ones met on the way are skipped. One write then activates the present, records the
/// walked range without an expiry (the skipped tokens are not written: see the module docs)
/// and moves the cursor over both. The walk runs under the line's admission and issue locks, and nothing else moves a
/// WAITING token above the cursor, so what it read is what the write finds: it checks that
/// every place it walked held a WAITING token, and the write that it activated every present
/// one.
fn admit_present(
    tx: &mut crate::work::Tx<'_>,
    room: &str,
    order: Order,
    policy: &AdmissionPolicy,
    now: OffsetDateTime,
    from: i64,
    n: u64,
) -> Result<AdmissionOutcome, Fail<()>> {
    let mut step = walk_step(n);
    let mut present: Vec<i64> = Vec::new();
    let mut walked: u64 = 0;
    let mut left: Vec<String> = Vec::new();
    let mut through = from;
    'walk: loop {
        // (position, stored seq, last sight) of the next `step` places, in line order.
        let mut rows: Vec<(i64, WalkRow)> = if order.is_identity_after(through) {
            prepared(ADMIT_WALK)
                .bind::<Text, _>(room)
                .bind::<BigInt, _>(through)
                .bind::<BigInt, _>(step)
                .load::<WalkRow>(tx.conn()?)?
                .into_iter()
                .map(|r| (r.seq, r))
                .collect()
        } else {
            let places: std::collections::HashMap<i64, i64> =
                order.arrivals(tx.conn()?, room, through, through + step)?.into_iter().map(|(p, a)| (a, p)).collect();
            let arrivals: Vec<i64> = places.keys().copied().collect();
            prepared(ADMIT_WALK_LIST)
                .bind::<Text, _>(room)
                .bind::<Array<BigInt>, _>(&arrivals)
                .load::<WalkRow>(tx.conn()?)?
                .into_iter()
                .map(|r| (places.get(&r.seq).copied().unwrap_or(r.seq), r))
                .collect()
        };
        rows.sort_by_key(|(position, _)| *position);
        let read = rows.len();
        for (position, row) in rows {
            if row.status != "WAITING" || position != through + 1 {
                // The cursor would move past a token that is not waiting, or a missing place.
                return Err(Fail::Store(StoreError::Internal(format!(
                    "admission above {from} met a {} token at place {position} after place {through}",
                    row.status
                ))));
            }
            through = position;
            walked += 1;
            left.push(row.token);
            if policy.is_present(row.last_seen, now) {
                present.push(row.seq);
                if count_len(present.len()) == n {
                    break 'walk;
                }
            }
        }
        if i64::try_from(read).unwrap_or(i64::MAX) < step {
            break;
        }
        step = next_walk_step(n - count_len(present.len()), walked, count_len(present.len()));
    }
    if walked == 0 {
        return Ok(AdmissionOutcome::Admitted(0));
    }
    let admitted = count_len(present.len());
    let skipped = walked - admitted;
    let changed: Count = prepared(ADMIT_WRITE_PRESENT)
        .bind::<Timestamptz, _>(now)
        .bind::<Timestamptz, _>(policy.expiry_for(now))
        .bind::<Array<BigInt>, _>(&present)
        .bind::<BigInt, _>(through)
        .bind::<Text, _>(room)
        .bind::<BigInt, _>(from)
        .bind::<BigInt, _>(i64::try_from(skipped).unwrap_or(i64::MAX))
        .get_result(tx.conn()?)?;
    if count(changed.n) != admitted {
        // The cursor would move past present tokens that were not activated.
        return Err(Fail::Store(StoreError::Internal(format!(
            "admission expected {admitted} WAITING tokens to activate at ({from}, {through}] and found {}",
            changed.n
        ))));
    }
    prepared(DROP_SIGHTS).bind::<Text, _>(room).bind::<Array<Text>, _>(&left).execute(tx.conn()?)?;
    Ok(AdmissionOutcome::of(admitted, skipped))
}

fn count_len(n: usize) -> u64 {
    u64::try_from(n).unwrap_or(u64::MAX)
}

impl PgStore {
    /// [`QueueStore::draw`]: one transaction under the line's admission lock (so serialised
    /// with its admission ticks and every other draw of it, in any process), on the store's
    /// clock read after the lock.
    ///
    /// The order is kept beside the tokens (see `order`): the draw makes the entrants the
    /// first `P` arrivals, writes each one's drawn place (entrants taken in the order of their
    /// values) into `queue_draw_positions` in one `INSERT ... SELECT`, and records
    /// `(at, P, seed)` in the line's cursor row; one COMMIT makes all of it visible. The
    /// entrants usually are the first arrivals already; when tokens near the opening committed
    /// out of step with their issue times, the window from the first later token to the last
    /// entrant is renumbered (entrants first, each group in its order) in one
    /// `UPDATE ... FROM unnest(old, new)` with the `(room, seq)` key checked at COMMIT. The
    /// issue lock is not taken: issues go on, numbering from `max(seq)`, which the window's
    /// permutation leaves as it is, and a token committed after the draw's read is a later
    /// arrival above every entrant.
    fn draw_line(&self, opens_at: OffsetDateTime, seed: u64) -> Result<DrawOutcome, StoreError> {
        if self.line.room.is_main() {
            // `main` has no opening (`Room::main`); its reads never place a token by a draw.
            return Err(StoreError::Internal("the line of main is never drawn".into()));
        }
        let started = Instant::now();
        let store_now = self.store_now();
        let room = self.line.name();
        let wait = DRAW_WAIT.as_millis();
        let begin = locks::draw_begin(self.line.key, wait, wait);
        let deadline = started + DRAW_WAIT.max(self.limits.budget);
        let outcome = self.transaction_until(&begin, deadline, |tx| {
            let read: DrawRead = prepared(DRAW_READ)
                .bind::<Nullable<Timestamptz>, _>(store_now)
                .bind::<Text, _>(room)
                .get_result(tx.conn()?)?;
            if let Some(record) = draw_record(read.draw_at, read.draw_entrants, read.draw_seed) {
                return Err(Fail::Refuse(DrawOutcome::Drawn { record, fresh: false }));
            }
            let now = read.now;
            if now < opens_at {
                return Err(Fail::Refuse(DrawOutcome::NotDue));
            }
            let shape: DrawShape =
                prepared(DRAW_SHAPE).bind::<Text, _>(room).bind::<Timestamptz, _>(opens_at).get_result(tx.conn()?)?;
            let mut moved = 0;
            if let (Some(first_later), Some(last_entrant)) = (shape.first_later, shape.last_entrant) {
                if first_later < last_entrant {
                    let window: DrawTokens = prepared(DRAW_WINDOW)
                        .bind::<Text, _>(room)
                        .bind::<Timestamptz, _>(opens_at)
                        .bind::<BigInt, _>(first_later)
                        .bind::<BigInt, _>(last_entrant)
                        .get_result(tx.conn()?)?;
                    let (old, new) = partition_window(first_later, &window.entrants, &window.later);
                    tx.conn()?.batch_execute(DEFER_SEQ)?;
                    moved = prepared(DRAW_RENUMBER)
                        .bind::<Text, _>(room)
                        .bind::<Array<BigInt>, _>(&old)
                        .bind::<Array<BigInt>, _>(&new)
                        .execute(tx.conn()?)?;
                    if moved != old.len() {
                        return Err(Fail::Store(StoreError::Internal(format!(
                            "the draw meant to move {} tokens and moved {moved}",
                            old.len()
                        ))));
                    }
                }
            }
            let entrants = count(shape.entrants);
            if entrants > 0 {
                let positions: Vec<i64> = drawn_positions(seed, entrants)
                    .into_iter()
                    .map(|p| i64::try_from(p).map_err(|_| StoreError::Internal("a drawn position overflows".into())))
                    .collect::<Result<_, _>>()?;
                let placed = prepared(DRAW_PLACES)
                    .bind::<Text, _>(room)
                    .bind::<BigInt, _>(shape.entrants)
                    .bind::<Array<BigInt>, _>(&positions)
                    .execute(tx.conn()?)?;
                if count_len(placed) != entrants {
                    return Err(Fail::Store(StoreError::Internal(format!(
                        "the draw placed {placed} of {entrants} entrants"
                    ))));
                }
                // Fresh statistics for the table every read of a drawn line now joins: without
                // them (autovacuum may be off, and is late anyway) the plans of those reads stay
                // the ones made for an empty table, and the first polls after a draw of a
                // million took ~46 ms each (make bench). ANALYZE also invalidates the prepared
                // plans, and becomes visible with the draw, atomically.
                diesel::sql_query(ANALYZE_PLACES).execute(tx.conn()?)?;
            }
            tracing::info!(room, entrants, moved, took_ms = started.elapsed().as_millis(), "drew the pre-queue");
            let record = DrawRecord { at: now, entrants, seed };
            prepared(DRAW_RECORD)
                .bind::<Text, _>(room)
                .bind::<Timestamptz, _>(now)
                .bind::<BigInt, _>(shape.entrants)
                .bind::<BigInt, _>(i64::from_be_bytes(seed.to_be_bytes()))
                .execute(tx.conn()?)?;
            Ok(DrawOutcome::Drawn { record, fresh: true })
        })?;
        Ok(outcome.unwrap_or_else(|early| early))
    }
}

/// The moves that make the entrants of a window starting at stored `seq` `start` its first
/// arrivals, each group keeping its order: the entrants take `start, start + 1, ...`, the
/// later tokens the rest. Returns the `(old, new)` pairs that change.
fn partition_window(start: i64, entrants: &[i64], later: &[i64]) -> (Vec<i64>, Vec<i64>) {
    let mut old_seqs = Vec::new();
    let mut new_seqs = Vec::new();
    for (&old, new) in entrants.iter().chain(later).zip(start..) {
        if old != new {
            old_seqs.push(old);
            new_seqs.push(new);
        }
    }
    (old_seqs, new_seqs)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, reason = "test code")]

    use super::*;

    #[test]
    fn a_window_puts_its_entrants_first_in_their_order() {
        // Arrivals 4..=8: 4 and 7 came after the opening, 5, 6 and 8 before it.
        let (old, new) = partition_window(4, &[5, 6, 8], &[4, 7]);
        assert_eq!(old, vec![5, 6, 8, 4, 7]);
        assert_eq!(new, vec![4, 5, 6, 7, 8]);
        assert_eq!(partition_window(1, &[1, 2], &[3]), (vec![], vec![]));
    }

    #[test]
    fn a_walk_sizes_its_next_step_by_the_presence_it_saw() {
        // 1,000 places held 83 present of 100 wanted: 17 more at 1 in 12 is about 205 places.
        assert_eq!(next_walk_step(17, 1_000, 83), 205 * 5 / 4 + 32);
        // Nobody present yet: twice the places walked; and never fewer than 64 or more than 20,000.
        assert_eq!(next_walk_step(100, 1_000, 0), 2_000);
        assert_eq!(next_walk_step(1, 1_000, 999), 64);
        assert_eq!(next_walk_step(100_000, 20_000, 1), 20_000);
    }
}
