//! Ports: what the domain needs from the outside world, as sync `Send + Sync`, dyn-compatible
//! traits. Adapters (PostgreSQL, in-memory) implement them; the use cases in
//! [`crate::service`] call them.
//!
//! The rules live in the domain; the ports' contracts below say what an implementation MUST do
//! *atomically* so that a rule holds with many threads and many instances. Where a decision has
//! to be taken inside the store's atomic section (admission), the port receives the domain's
//! policy object and calls its rule functions rather than re-deriving them.
//!
//! Every method returns [`StoreError`] when the store itself fails; implementations MUST map
//! "cannot reach the store" (connection refused, pool timeout) to [`StoreError::Unavailable`]
//! and everything else unexpected to [`StoreError::Internal`].

use thiserror::Error;
use time::OffsetDateTime;

use crate::account::{CreditOutcome, LedgerEntry};
use crate::catalogue::{Concert, ScheduleSummary, SeatRecord};
use crate::error::PayError;
use crate::ids::{ConcertId, LedgerEntryId, ReservationId, ScheduleId, UserId};
use crate::money::Won;
use crate::payment::Payment;
use crate::queue::{AdmissionOutcome, AdmissionPolicy, QueueCursor, QueueToken, TokenValue};
use crate::reservation::{HoldOutcome, HoldRequest, Reservation};

/// A failure of the store itself, not of a business rule.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum StoreError {
    /// The store cannot be reached (down, or no connection free in time). Retrying later may
    /// work. The text is for logs only, never for clients.
    #[error("store unavailable: {0}")]
    Unavailable(String),
    /// Anything else unexpected. The text is for logs only, never for clients.
    #[error("store failure: {0}")]
    Internal(String),
}

/// The result of [`QueueStore::issue`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IssueOutcome {
    /// The user's live token: the new one, or the one they already had.
    pub token: QueueToken,
    /// Whether `token` was created by this call.
    pub created: bool,
}

/// The waiting queue.
#[cfg_attr(any(test, feature = "mocks"), mockall::automock)]
pub trait QueueStore: Send + Sync {
    /// Gives `user` a place in line, once.
    ///
    /// Atomically: if the user has a token live at `now` (WAITING, or ACTIVE with
    /// `expires_at > now`) return it with `created: false`. Otherwise mark any ACTIVE token of
    /// theirs whose time is up EXPIRED, and store a new WAITING token with value `value`,
    /// `issued_at = now` and `seq` one above the highest ever issued (gapless: a failed issue
    /// MUST NOT consume a number). Concurrent calls for one user MUST yield one token.
    ///
    /// # Errors
    /// [`StoreError`] when the store fails; nothing is stored then.
    fn issue(&self, user: UserId, value: TokenValue, now: OffsetDateTime) -> Result<IssueOutcome, StoreError>;

    /// The token with this value, if any, as stored.
    ///
    /// # Errors
    /// [`StoreError`] when the store fails.
    fn find(&self, value: &TokenValue) -> Result<Option<QueueToken>, StoreError>;

    /// The token with this value and the queue cursor, read together (one round trip).
    ///
    /// # Errors
    /// [`StoreError`] when the store fails.
    fn find_with_cursor(&self, value: &TokenValue) -> Result<Option<(QueueToken, QueueCursor)>, StoreError>;

    /// The queue cursor.
    ///
    /// # Errors
    /// [`StoreError`] when the store fails.
    fn cursor(&self) -> Result<QueueCursor, StoreError>;

    /// Runs one admission tick, at most once per `policy.interval` over all instances.
    ///
    /// Atomically and serialised against every other caller, in any process: if
    /// `!policy.is_due(cursor.last_admission_at, now)` return `NotDue`. Otherwise let
    /// `n = policy.quota(active, waiting)` where `active` counts tokens ACTIVE and unexpired at
    /// `now` (count it only when `policy.max_active` is set; pass 0 otherwise) and `waiting`
    /// the WAITING tokens; activate the `n` WAITING tokens of lowest `seq` with
    /// `activated_at = now`, `expires_at = policy.expiry_for(now)`; advance
    /// `admitted_through` by `n`; if `n > 0` set `last_admission_at = now`. Return
    /// `Admitted(n)`. An implementation MAY return `Busy` instead of waiting when another
    /// caller holds the admission lock.
    ///
    /// # Errors
    /// [`StoreError`] when the store fails; nothing is admitted then.
    fn admit(&self, policy: &AdmissionPolicy, now: OffsetDateTime) -> Result<AdmissionOutcome, StoreError>;

    /// Marks every ACTIVE token with `expires_at <= now` EXPIRED; returns how many changed.
    /// Concurrent callers MUST together change each token once.
    ///
    /// # Errors
    /// [`StoreError`] when the store fails.
    fn expire_tokens(&self, now: OffsetDateTime) -> Result<u64, StoreError>;
}

/// Concerts, schedules and seats.
#[cfg_attr(any(test, feature = "mocks"), mockall::automock)]
pub trait CatalogueStore: Send + Sync {
    /// Every concert, by title.
    ///
    /// # Errors
    /// [`StoreError`] when the store fails.
    fn concerts(&self) -> Result<Vec<Concert>, StoreError>;

    /// `None` if the concert is unknown; else its schedules with `starts_at > now`, ascending
    /// by `starts_at`, with `available_seats` counting seats that have no PAID reservation and
    /// no HELD one with `held_until > now`.
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
}

/// Reservations (seat holds).
#[cfg_attr(any(test, feature = "mocks"), mockall::automock)]
pub trait ReservationStore: Send + Sync {
    /// Holds a seat, atomically: `NoSuchSeat` unless the seat belongs to `req.schedule_id` and
    /// that schedule starts after `req.now`; `SeatTaken` if the seat has a PAID reservation or
    /// a HELD one with `held_until > req.now`; else mark any lapsed HELD reservation of the seat
    /// EXPIRED and store a new HELD one (`created_at = req.now`, price and number from the
    /// seat). Of any number of concurrent calls for one seat, in any process, at most one
    /// returns `Held`.
    ///
    /// # Errors
    /// [`StoreError`] when the store fails; nothing is stored then.
    fn hold(&self, req: &HoldRequest) -> Result<HoldOutcome, StoreError>;

    /// The reservation with this id, as stored.
    ///
    /// # Errors
    /// [`StoreError`] when the store fails.
    fn find(&self, id: ReservationId) -> Result<Option<Reservation>, StoreError>;

    /// Marks every HELD reservation with `held_until <= now` EXPIRED; returns how many changed.
    /// Concurrent callers (and payments) MUST together change each reservation once.
    ///
    /// # Errors
    /// [`StoreError`] when the store fails.
    fn release_lapsed(&self, now: OffsetDateTime) -> Result<u64, StoreError>;
}

/// Balances and their ledger.
#[cfg_attr(any(test, feature = "mocks"), mockall::automock)]
pub trait AccountStore: Send + Sync {
    /// The user's balance; 0 for a user never charged.
    ///
    /// # Errors
    /// [`StoreError`] when the store fails.
    fn balance(&self, user: UserId) -> Result<Won, StoreError>;

    /// Adds `amount` (> 0) to the balance unless the result would exceed `limit`, as one
    /// atomic conditional update (never read-modify-write), and in the same transaction
    /// appends a CHARGE ledger entry with id `entry`, time `at` and the new balance. Returns
    /// `LimitExceeded(current)` and changes nothing when over the limit.
    ///
    /// # Errors
    /// [`StoreError`] when the store fails; nothing changes then.
    fn credit(
        &self,
        user: UserId,
        amount: Won,
        limit: Won,
        entry: LedgerEntryId,
        at: OffsetDateTime,
    ) -> Result<CreditOutcome, StoreError>;

    /// The user's ledger, oldest first.
    ///
    /// # Errors
    /// [`StoreError`] when the store fails.
    fn ledger(&self, user: UserId) -> Result<Vec<LedgerEntry>, StoreError>;
}

/// The result of [`PaymentTx::debit`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DebitOutcome {
    /// Debited; the new balance.
    Debited(Won),
    /// Not debited: the balance is below the amount. The unchanged balance.
    Insufficient(Won),
}

/// The operations a payment performs inside one transaction (see [`PaymentUnitOfWork`]).
#[cfg_attr(any(test, feature = "mocks"), mockall::automock)]
pub trait PaymentTx {
    /// The reservation, locked against concurrent payments and hold release until the
    /// transaction ends.
    ///
    /// # Errors
    /// [`StoreError`] when the store fails.
    fn lock_reservation(&mut self, id: ReservationId) -> Result<Option<Reservation>, StoreError>;

    /// Subtracts `amount` from the balance if it covers it, as one atomic conditional update.
    ///
    /// # Errors
    /// [`StoreError`] when the store fails.
    fn debit(&mut self, user: UserId, amount: Won) -> Result<DebitOutcome, StoreError>;

    /// Marks the (locked, HELD) reservation PAID at `at`.
    ///
    /// # Errors
    /// [`StoreError`] when the store fails.
    fn mark_paid(&mut self, id: ReservationId, at: OffsetDateTime) -> Result<(), StoreError>;

    /// Stores the payment.
    ///
    /// # Errors
    /// [`StoreError`] when the store fails.
    fn record_payment(&mut self, payment: &Payment) -> Result<(), StoreError>;

    /// Appends a ledger entry.
    ///
    /// # Errors
    /// [`StoreError`] when the store fails.
    fn append_ledger(&mut self, entry: &LedgerEntry) -> Result<(), StoreError>;

    /// Expires the user's WAITING or ACTIVE tokens (`expires_at = at`): a payment uses the
    /// token up.
    ///
    /// # Errors
    /// [`StoreError`] when the store fails.
    fn expire_tokens_of(&mut self, user: UserId, at: OffsetDateTime) -> Result<(), StoreError>;
}

/// The work of one payment, run by a [`PaymentUnitOfWork`].
pub type PaymentWork<'a> = dyn FnMut(&mut dyn PaymentTx) -> Result<Payment, PayError> + 'a;

/// Runs a payment's work in one transaction: the domain states the rule once
/// ([`crate::service::Ticketing::pay`]) and each adapter makes it all-or-nothing.
pub trait PaymentUnitOfWork: Send + Sync {
    /// Begins a transaction, runs `work` with it, commits if `work` returns `Ok` and rolls
    /// everything back if it returns `Err`. A store failure during begin or commit is returned
    /// as [`PayError::Store`] (nothing changed).
    ///
    /// # Errors
    /// Whatever `work` returns, or [`PayError::Store`].
    fn run(&self, work: &mut PaymentWork<'_>) -> Result<Payment, PayError>;
}
