//! Ports: what the domain needs from the outside world, as sync `Send + Sync`, dyn-compatible
//! traits, and one async port, [`AsyncQueueLines`], for the front door's two queue calls on a
//! store with a non-blocking client. Adapters (PostgreSQL, Redis, in-memory) implement them; the use cases in
//! [`crate::service`] call them.
//!
//! The rules live in the domain; the contracts below say what an implementation MUST do
//! *atomically* so that a rule holds with many threads and many instances. Where a decision has
//! to be taken inside the store's atomic section, the port either receives the domain's
//! decision function (payments: read, decide, apply) or the policy value whose rule it applies
//! (admission), and each place where a store restates a rule in its own language names the
//! domain function it mirrors.
//!
//! **The commit agreement** ([`crate::call`]), which no signature shows: a caller may give up
//! on a call at its deadline and answer 503, which promises that nothing was done. So every
//! implementation MUST call `call::commit_point()` right before a write it cannot take back (a
//! COMMIT, a script that writes, a change applied under the store's lock) and, when it answers
//! `false`, not make the write and return [`StoreError::Timeout`]. An implementation that makes
//! the write on another thread (a group-commit batcher) MUST carry `call::current()` there and
//! ask under `call::attached`. The caller's watch travels as a thread-local rather than as an
//! argument of every method; the conformance cases in `port_tests::commit` fail a store that
//! forgets it.
//!
//! Every method returns [`StoreError`] when the store itself fails, and then has changed
//! nothing. Implementations MUST map "cannot reach the store" (connection refused or lost,
//! pool timeout) to [`StoreError::Unavailable`], "gave up waiting" (lock or statement timeout)
//! to [`StoreError::Timeout`], and everything else unexpected to [`StoreError::Internal`].

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use time::OffsetDateTime;

use crate::account::{CreditOutcome, CreditRequest, LedgerEntry, LedgerQuery};
use crate::audit::{AuditEntry, OperatorNote};
use crate::call::CommitWatch;
use crate::catalogue::{AddSchedule, Concert, NewConcert, NewSchedule, ScheduleSales, ScheduleSummary, SeatRecord};
use crate::error::PayError;
pub use crate::error::StoreError;
use crate::idempotency::{Claimed, IdempotencyGuard, IdempotencyKey, IdempotencyRecord};
use crate::ids::{ConcertId, ReservationId, ScheduleId, UserId};
use crate::money::Won;
use crate::payment::{PaymentFacts, PaymentRequest, Settlement};
use crate::queue::{
    AdmissionOutcome, AdmissionPolicy, QueueCursor, QueueSettings, QueueStats, QueueToken, SettingsPatch, TokenValue,
};
use crate::reservation::{HoldOutcome, HoldRequest, Reservation};
use crate::room::{CreateRoomOutcome, DrawOutcome, Room, RoomChangeError, RoomId, UpdateRoomOutcome};

/// The result of [`QueueStore::issue`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IssueOutcome {
    /// The user's live token: the new one, or the one they already had.
    pub token: QueueToken,
    /// Whether `token` was created by this call.
    pub created: bool,
    /// The queue cursor, read with the issue (for the new token's position).
    pub cursor: QueueCursor,
}

/// The waiting queue.
#[cfg_attr(any(test, feature = "mocks"), mockall::automock)]
pub trait QueueStore: Send + Sync {
    /// Gives `user` a place in line, once.
    ///
    /// Atomically: if the user has a token live at `now` (WAITING, or ACTIVE with
    /// `expires_at > now`) return it with `created: false`. Otherwise mark any ACTIVE token of
    /// theirs whose time is up EXPIRED, and store a new WAITING token with value `value`,
    /// `issued_at = now` and `seq` one above the highest ever issued, gapless and in commit
    /// order (a failed issue MUST NOT consume a number; a token becomes visible only after
    /// every lower `seq`). Concurrent calls for one user, in any process, MUST yield one token.
    ///
    /// # Errors
    /// [`StoreError`] when the store fails; nothing is stored then.
    fn issue(&self, user: UserId, value: TokenValue, now: OffsetDateTime) -> Result<IssueOutcome, StoreError>;

    /// The token with this value, if any, as stored now. Used to grant access: never stale.
    ///
    /// # Errors
    /// [`StoreError`] when the store fails.
    fn find(&self, value: &TokenValue) -> Result<Option<QueueToken>, StoreError>;

    /// The token with this value and the queue cursor, read together (one round trip). A
    /// caching implementation MAY answer a WAITING token from memory with a cursor at most its
    /// configured staleness old.
    ///
    /// # Errors
    /// [`StoreError`] when the store fails.
    fn find_with_cursor(&self, value: &TokenValue) -> Result<Option<(QueueToken, QueueCursor)>, StoreError>;

    /// What [`QueueStore::find_with_cursor`] would answer, if it can be answered from this
    /// process's memory without blocking on I/O; `None` otherwise (the caller then calls
    /// `find_with_cursor` on a thread that may block). Stores without a cache answer `None`.
    fn find_in_memory(&self, _value: &TokenValue) -> Option<(QueueToken, QueueCursor)> {
        None
    }

    /// The queue cursor.
    ///
    /// # Errors
    /// [`StoreError`] when the store fails.
    fn cursor(&self) -> Result<QueueCursor, StoreError>;

    /// Runs one admission tick, at most once per `policy.interval` over all instances, timed
    /// on the store's own clock (never the caller's), so instances whose clocks disagree still
    /// admit at most `policy.batch` per interval.
    ///
    /// Atomically and serialised against every other caller, in any process, with `now` the
    /// store's clock: if `!policy.is_due(cursor.last_admission_at, now)` return
    /// `NotDue { wait: next_admission_at - now }`. Otherwise let
    /// `n = policy.quota(active, waiting)` where `active` counts tokens ACTIVE and unexpired at
    /// `now` (count it only when `policy.max_active` is set; pass 0 otherwise) and `waiting`
    /// the WAITING tokens; activate the `n` WAITING tokens of lowest `seq` with
    /// `activated_at = now`, `expires_at = policy.expiry_for(now)`; advance
    /// `admitted_through` by `n`; if `n > 0` set `last_admission_at = now`. Return
    /// `Admitted(n)`. An implementation MAY return `Busy` instead of waiting when another
    /// caller holds the admission lock. Never returns `Paused` (pausing is the domain's).
    ///
    /// With `policy.abandon_after` set, the `n` are taken among the *present* WAITING tokens
    /// (`policy.is_present(last_seen, now)`, `last_seen` the later of the issue and the last
    /// [`QueueStore::note_seen`]): walking the WAITING tokens in `seq` order, an absent one met
    /// before the `n`-th present one is skipped (EXPIRED, `expires_at = now`, reason
    /// `ABANDONED`; it does not count against `n`), `admitted_through` advances over both, the
    /// line's `abandoned` count grows by the skipped, and the answer is
    /// `AdmissionOutcome::of(admitted, skipped)`. `waiting` in the quota counts every WAITING
    /// token, present or not.
    ///
    /// # Errors
    /// [`StoreError`] when the store fails; nothing is admitted then.
    fn admit(&self, policy: &AdmissionPolicy) -> Result<AdmissionOutcome, StoreError>;

    /// Marks at most `limit` ACTIVE tokens with `expires_at <=` the store's clock EXPIRED;
    /// returns how many changed. Concurrent callers MUST together change each token once.
    ///
    /// # Errors
    /// [`StoreError`] when the store fails.
    fn expire_tokens(&self, limit: u32) -> Result<u64, StoreError>;

    /// Uses up the token with this value after it paid: if it is ACTIVE, it becomes EXPIRED
    /// with `expires_at = at`. Idempotent; never touches another token (a WAITING token of the
    /// same user stays in line). After a payment it is called only when the payment store did
    /// not use the token up in its own transaction ([`Settlement::uses_up_token`]).
    ///
    /// # Errors
    /// [`StoreError`] when the store fails.
    fn use_up(&self, value: &TokenValue, at: OffsetDateTime) -> Result<(), StoreError>;

    /// Counts and cursor for an operator, with the store's clock.
    ///
    /// # Errors
    /// [`StoreError`] when the store fails.
    fn stats(&self) -> Result<QueueStats, StoreError>;

    /// Readiness: `Ok` when the store answers.
    ///
    /// # Errors
    /// [`StoreError::Unavailable`] when it cannot be reached.
    fn ping(&self) -> Result<(), StoreError>;

    /// Draws the order of the line's pre-queue, once over all instances.
    ///
    /// Atomically and serialised against [`QueueStore::admit`] and every other `draw`, in any
    /// process, with `now` the store's clock: if the line has a draw recorded, return it
    /// (`fresh: false`). If `now < opens_at` return `NotDue`. Otherwise let the entrants be the
    /// tokens issued before `opens_at`, `P` of them, taken in the order of their values (the
    /// bearer strings, byte-wise; an order the draw does not change, so the operator can
    /// recompute it from the stored tokens): the `i`-th (from 0) gets
    /// `seq = room::drawn_positions(seed, P)[i]`, and every other token issued so far gets
    /// `P + 1, P + 2, ...` in its `seq` order (`seq` stays gapless: the line is renumbered,
    /// not grown); record `DrawRecord { at: now, entrants: P, seed }` in the cursor
    /// and return it (`fresh: true`). Nothing is admitted before the draw, so every entrant is
    /// WAITING. Issues and reads MAY go on while it runs. A reader sees the cursor either
    /// without the draw or with it, and once it has the draw, every token in its drawn place;
    /// before that, a store that writes the places in steps MAY show a token's new
    /// `seq` already: the domain shows no position while the cursor has no draw
    /// (`Room::order_pending_at`), so no client ever sees a half-drawn line.
    ///
    /// # Errors
    /// [`StoreError`] when the store fails; nothing is drawn then.
    fn draw(&self, opens_at: OffsetDateTime, seed: u64) -> Result<DrawOutcome, StoreError>;

    /// Notes that these tokens were seen at `at` (polled or re-joined): presence for
    /// [`AdmissionPolicy::abandon_after`]. One write for the whole batch; a token's last sight
    /// only ever moves forward; values of other lines, unknown or no longer WAITING are
    /// ignored. A token's issue counts as a sight of its own.
    ///
    /// # Errors
    /// [`StoreError`] when the store fails.
    fn note_seen(&self, values: &[TokenValue], at: OffsetDateTime) -> Result<(), StoreError>;
}

/// The waiting lines of the rooms other than `main` (whose line is [`crate::service::Ports`]'
/// `queue`). Each line keeps every contract of [`QueueStore`] on its own: its own `seq`, cursor,
/// admissions and draw; one live token per user per line.
pub trait QueueLines: Send + Sync {
    /// The line of `room`. Lines cost nothing until used: a room's line exists from its first
    /// token on.
    fn line(&self, room: &RoomId) -> Arc<dyn QueueStore>;
}

/// What an [`AsyncQueueLines`] call returns: a boxed future, so the trait stays dyn-compatible
/// and the domain needs no async runtime nor any crate beyond `std`.
pub type StoreFuture<'a, T> = Pin<Box<dyn Future<Output = Result<T, StoreError>> + Send + 'a>>;

/// The two queue calls of the front door (joining a line, polling a token), for a store that
/// can make them without blocking a thread: the HTTP worker awaits them where it runs, with no
/// hop to a blocking thread and back (on a store whose round trip is short, that hop was most
/// of a call's cost). Every other queue call, and every store without such a client, keeps the
/// synchronous [`QueueStore`]; so do these two when the use case lacks something in memory
/// (see `service::Ticketing::issue_token_nonblocking`).
///
/// Each method keeps the contract of its [`QueueStore`] namesake on the line of `room` (the
/// same store and keys as [`QueueLines::line`] of that room, or [`crate::service::Ports`]'
/// `queue` for `main`), so both paths may serve one line at once, on one instance or several.
///
/// **The commit agreement** is explicit here, since no thread carries the caller's watch: an
/// implementation MUST call [`CommitWatch::begin_commit`] right before it sends a write, and
/// when that answers `false` send nothing and return [`StoreError::Timeout`]. The caller abandons
/// the watch at its deadline; if that succeeds it drops the future (nothing was or will be
/// sent), otherwise it awaits the outcome. Reads take no watch: dropping one changes nothing.
pub trait AsyncQueueLines: Send + Sync + std::fmt::Debug {
    /// [`QueueStore::issue`] in the line of `room`.
    ///
    /// # Errors
    /// As [`QueueStore::issue`]; [`StoreError::Timeout`] when `watch` was abandoned first.
    fn issue<'a>(
        &'a self,
        room: &'a RoomId,
        user: UserId,
        value: TokenValue,
        now: OffsetDateTime,
        watch: &'a CommitWatch,
    ) -> StoreFuture<'a, IssueOutcome>;

    /// [`QueueStore::find_with_cursor`] in the line of `room`.
    ///
    /// # Errors
    /// As [`QueueStore::find_with_cursor`].
    fn find_with_cursor<'a>(
        &'a self,
        room: &'a RoomId,
        value: &'a TokenValue,
    ) -> StoreFuture<'a, Option<(QueueToken, QueueCursor)>>;
}

/// The domain's decision in [`RoomStore::update_room`]: the room after the change, given the
/// room as stored.
pub type ChangeRoom<'a> = dyn FnMut(&Room) -> Result<Room, RoomChangeError> + 'a;

/// The rooms other than `main` (whose settings are the [`SettingsStore`]'s), shared by every
/// instance and kept across restarts.
#[cfg_attr(any(test, feature = "mocks"), mockall::automock)]
pub trait RoomStore: Send + Sync {
    /// Every room but `main`, by id.
    ///
    /// # Errors
    /// [`StoreError`] when the store fails.
    fn rooms(&self) -> Result<Vec<Room>, StoreError>;

    /// What [`RoomStore::rooms`] would answer, from this process's memory without blocking on
    /// I/O; `None` when it cannot (stores without a cache).
    fn rooms_in_memory(&self) -> Option<Arc<[Room]>> {
        None
    }

    /// Stores a new room with its concerts, and the log line of `note`, all or nothing.
    /// Atomically: `Exists` when the id is taken; `UnknownConcert` for a concert that does not
    /// exist; `ConcertTaken` for one that another room lists (concurrent creations never both
    /// take one concert).
    ///
    /// # Errors
    /// [`StoreError`] when the store fails; nothing is stored then.
    #[allow(clippy::needless_lifetimes, reason = "mockall needs the lifetime of an `Option<&T>` argument named")]
    fn create_room<'a>(&self, room: &Room, note: Option<&'a OperatorNote>) -> Result<CreateRoomOutcome, StoreError>;

    /// Changes a room under its lock: reads it as stored, asks `change` for the room after the
    /// change (the domain's decision; refused changes are returned as `Refused`), stores it
    /// with its concerts and the log line of `note` (before and after as read and written
    /// here), all or nothing. Concerts outside the new list go back to `main`; concerts added
    /// must not be in another room (`ConcertTaken`) and must exist (`UnknownConcert`).
    ///
    /// # Errors
    /// [`StoreError`] when the store fails; nothing changes then.
    fn update_room<'a>(
        &self,
        id: &RoomId,
        change: &mut ChangeRoom<'a>,
        note: Option<&'a OperatorNote>,
    ) -> Result<UpdateRoomOutcome, StoreError>;
}

/// The waiting room's live settings (pause, N, M, TTL, cap), shared by every instance and kept
/// across restarts.
#[cfg_attr(any(test, feature = "mocks"), mockall::automock)]
pub trait SettingsStore: Send + Sync {
    /// The settings in force: the last ones stored by [`SettingsStore::update`], or the
    /// starting values this store was built with if none were ever stored. A caching
    /// implementation MAY answer from memory with a copy at most its configured staleness old.
    ///
    /// # Errors
    /// [`StoreError`] when the store fails.
    fn load(&self) -> Result<QueueSettings, StoreError>;

    /// What [`SettingsStore::load`] would answer, if this process has it in memory now;
    /// `None` otherwise (stores without a cache answer `None`).
    fn load_in_memory(&self) -> Option<QueueSettings> {
        None
    }

    /// Applies `patch` to the settings in force and stores the result, atomically against
    /// concurrent updates from any instance; returns the settings before and after. With a
    /// `note`, the operator log's line (`OperatorAction::queue_update` of the settings read and
    /// written) is stored in the same unit of work.
    ///
    /// # Errors
    /// [`StoreError`] when the store fails; nothing changes then.
    #[allow(clippy::needless_lifetimes, reason = "mockall needs the lifetime of an `Option<&T>` argument named")]
    fn update<'a>(
        &self,
        patch: &SettingsPatch,
        note: Option<&'a OperatorNote>,
    ) -> Result<(QueueSettings, QueueSettings), StoreError>;
}

/// Concerts, schedules and seats.
#[cfg_attr(any(test, feature = "mocks"), mockall::automock)]
pub trait CatalogueStore: Send + Sync {
    /// Every concert, by title.
    ///
    /// # Errors
    /// [`StoreError`] when the store fails.
    fn concerts(&self) -> Result<Vec<Concert>, StoreError>;

    /// `None` if the concert is unknown; else its bookable schedules
    /// ([`ScheduleSummary::is_bookable_at`] `now`), ascending by `starts_at`, with
    /// `available_seats` counting seats whose status at `now` is AVAILABLE
    /// ([`SeatRecord::status_at`]).
    ///
    /// # Errors
    /// [`StoreError`] when the store fails.
    fn schedules(&self, concert: ConcertId, now: OffsetDateTime) -> Result<Option<Vec<ScheduleSummary>>, StoreError>;

    /// `None` if the schedule is unknown; else all its seats by number, each with its HELD or
    /// PAID reservation if it has one (a HELD one may have lapsed; the domain decides).
    ///
    /// # Errors
    /// [`StoreError`] when the store fails.
    fn seats(&self, schedule: ScheduleId) -> Result<Option<Vec<SeatRecord>>, StoreError>;

    /// Stores a concert with all its schedules and seats, all or nothing, and with a `note`
    /// the operator log's line (`OperatorAction::concert_created`) with it. `Ok(false)` when a
    /// concert with this id exists already (nothing changed).
    ///
    /// # Errors
    /// [`StoreError`] when the store fails; nothing is stored then.
    #[allow(clippy::needless_lifetimes, reason = "mockall needs the lifetime of an `Option<&T>` argument named")]
    fn create_concert<'a>(&self, concert: &NewConcert, note: Option<&'a OperatorNote>) -> Result<bool, StoreError>;

    /// Stores a schedule with its seats, all or nothing, and with a `note` the operator log's
    /// line (`OperatorAction::schedule_added`) with it.
    ///
    /// # Errors
    /// [`StoreError`] when the store fails; nothing is stored then.
    #[allow(clippy::needless_lifetimes, reason = "mockall needs the lifetime of an `Option<&T>` argument named")]
    fn add_schedule<'a>(
        &self,
        schedule: &NewSchedule,
        note: Option<&'a OperatorNote>,
    ) -> Result<AddSchedule, StoreError>;

    /// `None` if the concert is unknown; else, per schedule (past ones included) ascending by
    /// start, its seats sold, held and available as of `now` ([`SeatRecord::status_at`]) and
    /// the sum of the prices paid.
    ///
    /// # Errors
    /// [`StoreError`] when the store fails.
    fn sales(&self, concert: ConcertId, now: OffsetDateTime) -> Result<Option<Vec<ScheduleSales>>, StoreError>;

    /// The concert a schedule belongs to; `None` for an unknown schedule. (Rooms gate concerts;
    /// requests name schedules.)
    ///
    /// # Errors
    /// [`StoreError`] when the store fails.
    fn concert_of(&self, schedule: ScheduleId) -> Result<Option<ConcertId>, StoreError>;
}

/// Reservations (seat holds).
#[cfg_attr(any(test, feature = "mocks"), mockall::automock)]
pub trait ReservationStore: Send + Sync {
    /// Holds a seat, atomically: `NoSuchSeat` unless the seat belongs to `req.schedule_id` and
    /// that schedule is bookable at `req.now`; `SeatTaken` if the seat has a PAID reservation
    /// or a HELD one with `held_until > req.now`; `HoldLimit` unless
    /// [`crate::reservation::may_hold_another`] allows the user's live holds at `req.now`
    /// under `req.max_live_holds`; else mark any lapsed HELD reservation of the seat EXPIRED
    /// and store a new HELD one (`created_at = req.now`, price and number from the seat).
    /// Of any number of concurrent calls for one seat, in any process, at most one returns
    /// `Held`; concurrent calls of one user never take them past the limit.
    ///
    /// # Errors
    /// [`StoreError`] when the store fails; nothing is stored then.
    fn hold(&self, req: &HoldRequest) -> Result<HoldOutcome, StoreError>;

    /// The reservation with this id, as stored.
    ///
    /// # Errors
    /// [`StoreError`] when the store fails.
    fn find(&self, id: ReservationId) -> Result<Option<Reservation>, StoreError>;

    /// Marks at most `limit` HELD reservations with `held_until <= now` EXPIRED; returns how
    /// many changed. Concurrent callers (and payments) MUST together change each once.
    ///
    /// # Errors
    /// [`StoreError`] when the store fails.
    fn release_lapsed(&self, now: OffsetDateTime, limit: u32) -> Result<u64, StoreError>;
}

/// Balances and their ledger.
pub trait AccountStore: Send + Sync {
    /// The user's balance; 0 for a user never charged.
    ///
    /// # Errors
    /// [`StoreError`] when the store fails.
    fn balance(&self, user: UserId) -> Result<Won, StoreError>;

    /// Adds `req.amount` to the balance if [`crate::money::credit_fits`] under `req.limit`, as
    /// one atomic conditional update (never read-modify-write), and in the same transaction
    /// appends a CHARGE ledger entry (`req.entry`, `req.at`, the new balance). Returns
    /// `LimitExceeded(current)` and changes nothing when over the limit.
    ///
    /// With a `guard`, in the same transaction and before the credit: claim
    /// `(guard.user, guard.key)`. If an unexpired record exists (after waiting, within the
    /// store's lock timeout, for a concurrent claimer to commit or roll back) return
    /// `Recorded(record)` and change nothing; if that wait gives up return `InFlight`.
    /// Otherwise credit, and on `Credited` store the record (`guard.fingerprint`,
    /// `(guard.render)(Charged)`, kept until `guard.expires_at`) before committing; on
    /// `LimitExceeded` store no record.
    ///
    /// # Errors
    /// [`StoreError`] when the store fails; nothing changes then.
    fn credit(
        &self,
        req: &CreditRequest,
        guard: Option<&IdempotencyGuard<'_>>,
    ) -> Result<Claimed<CreditOutcome>, StoreError>;

    /// `None` when `query.before` is given and is not an entry of this user; else the user's
    /// entries older than `query.before` (all when `None`), newest first, at most
    /// `query.limit` of them.
    ///
    /// # Errors
    /// [`StoreError`] when the store fails.
    fn ledger(&self, user: UserId, query: &LedgerQuery) -> Result<Option<Vec<LedgerEntry>>, StoreError>;
}

/// The payment's decision function (see [`PaymentStore::pay`]).
pub type Decide<'a> = dyn FnMut(&PaymentFacts) -> Result<Settlement, PayError> + 'a;

/// Payments, as one unit of work shaped read, decide, apply.
pub trait PaymentStore: Send + Sync {
    /// In one transaction:
    /// 1. with a `guard`, claim the key as [`AccountStore::credit`] does (`Recorded`,
    ///    `InFlight`);
    /// 2. read [`PaymentFacts`] for `req`, holding, until commit, locks that serialise it
    ///    against every other payment of the reservation or with the token, hold release,
    ///    and every other change of the balance (and, when this store holds the queue, of the
    ///    token);
    /// 3. call `decide` once with them; on `Err`, roll back and return it;
    /// 4. apply the [`Settlement`]: reservation PAID at `payment.paid_at`, balance debited by
    ///    `payment.amount`, the payment stored with its token (at most one payment per token
    ///    and per reservation, enforced by the store too), the ledger entry appended, the
    ///    token EXPIRED with `expires_at = paid_at` when [`Settlement::uses_up_token`] (this
    ///    store holds the token: it read it into the facts), and with a guard the record
    ///    (`(guard.render)(Paid)`); then commit.
    ///
    /// # Errors
    /// Whatever `decide` returns, or [`PayError::Store`]; nothing changed on any of them.
    fn pay(
        &self,
        req: &PaymentRequest,
        guard: Option<&IdempotencyGuard<'_>>,
        decide: &mut Decide<'_>,
    ) -> Result<Claimed<Settlement>, PayError>;
}

/// The records of keyed requests.
#[cfg_attr(any(test, feature = "mocks"), mockall::automock)]
pub trait IdempotencyStore: Send + Sync {
    /// The unexpired record of `(user, key)` at `now`, if any (committed records only).
    ///
    /// # Errors
    /// [`StoreError`] when the store fails.
    fn find(
        &self,
        user: UserId,
        key: &IdempotencyKey,
        now: OffsetDateTime,
    ) -> Result<Option<IdempotencyRecord>, StoreError>;

    /// Deletes at most `limit` records that expired by `now`; returns how many.
    ///
    /// # Errors
    /// [`StoreError`] when the store fails.
    fn purge_expired(&self, now: OffsetDateTime, limit: u32) -> Result<u64, StoreError>;
}

/// The operator log (written by the stores with each change, see [`OperatorNote`]).
#[cfg_attr(any(test, feature = "mocks"), mockall::automock)]
pub trait AuditStore: Send + Sync {
    /// At most `limit` lines, newest first, with `seq` below `before` when given.
    ///
    /// # Errors
    /// [`StoreError`] when the store fails.
    fn audit_log(&self, before: Option<i64>, limit: u32) -> Result<Vec<AuditEntry>, StoreError>;
}
