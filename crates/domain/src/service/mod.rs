//! The use cases, one method per step of the product's sequence diagrams, plus the operator's.
//!
//! [`Ticketing`] owns the ports and the static policy; adapters call it (HTTP handlers on a
//! bounded blocking pool, the scheduler through `spawn_blocking`). Steps 4-6 take an
//! [`ActiveUser`], which only [`Ticketing::authorize`] can make, so "an ACTIVE token is
//! required" is enforced by the type system rather than remembered by each handler. Paying
//! (step 7) takes the bearer token itself, because a retry of a recorded payment is answered
//! even though that payment used the token up.
//!
//! The rooms' use cases (joining a room, its line, its draw and presence, the gate an ACTIVE
//! token's room puts on concerts, the operator's rooms) are in [`rooms`].
//!
//! Joining a line and polling a token also have non-blocking forms (in `front`) over the
//! async queue port ([`crate::ports::AsyncQueueLines`], given by
//! [`Ticketing::with_async_queue`]), which an HTTP worker awaits itself: they share their
//! decision and answer steps with the blocking forms, and answer `None` (block instead) when
//! what they need is not in memory.

mod front;
mod rooms;

pub use front::{IssueStep, ReadStep};
pub use rooms::{RoomTick, RoomView, ROOM_CHECKS_AT_ONCE};

use std::sync::Arc;

use time::{Duration, OffsetDateTime};
use tracing::instrument;

use crate::account::{CreditOutcome, CreditRequest, LedgerPage, LedgerQuery, HISTORY_PAGE, HISTORY_PAGE_DEFAULT};
use crate::audit::{AuditPage, OperatorNote, AUDIT_PAGE, AUDIT_PAGE_DEFAULT};
use crate::catalogue::{
    AddSchedule, Concert, ConcertDraft, NewConcert, NewSchedule, ScheduleDraft, ScheduleSales, ScheduleSummary,
    SeatView,
};
use crate::clock::Clock;
use crate::error::{
    AddScheduleError, AuditLogError, AuthorizeError, BalanceError, ChargeError, CreateConcertError,
    GetReservationError, HistoryError, IssueTokenError, ListConcertsError, ListSchedulesError, ListSeatsError,
    PayError, ReadTokenError, ReserveError, SalesError, StoreError, UpdateQueueError,
};
use crate::idempotency::{
    Claimed, Effect, Fingerprint, IdempotencyGuard, IdempotencyRecord, IdempotencyRequest, Outcome, Replay,
};
use crate::ids::{ConcertId, LedgerEntryId, PaymentId, ReservationId, ScheduleId, SeatId, UserId};
use crate::money::{ChargeAmount, Won, BALANCE_LIMIT};
use crate::payment::{settle, Payment, PaymentRequest, SettlementIds};
use crate::ports::{
    AccountStore, AuditStore, CatalogueStore, IdempotencyStore, PaymentStore, QueueLines, QueueStore, ReservationStore,
    RoomStore, SettingsStore,
};
use crate::presence::Sightings;
use crate::queue::{
    AdmissionOutcome, QueueSettings, QueueState, QueueToken, SettingsPatch, TokenStatus, TokenValue, TokenView,
};
use crate::random::Randomness;
use crate::reservation::{HoldOutcome, HoldRequest, Reservation};
use crate::room::{room_of, RoomId};
use rooms::Gate;

/// The settings that are fixed for the life of an instance (the waiting room's live settings
/// are read through [`SettingsStore`] instead).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Policy {
    /// How long a reservation holds a seat unpaid (`SEAT_HOLD_SECS`).
    pub hold: Duration,
    /// Most live holds one user may have (`MAX_HOLDS_PER_USER`).
    pub max_holds_per_user: u32,
    /// How long a recorded `Idempotency-Key` outcome is kept, at least (`IDEMPOTENCY_TTL_SECS`).
    pub idempotency_ttl: Duration,
    /// Most rows one sweep statement changes (token expiry, hold release, key purge), so a
    /// backlog after an outage never makes one statement run long.
    pub sweep_batch: u32,
    /// Most sweep statements of one kind per scheduler tick; the rest waits for the next tick.
    pub sweep_batches_per_tick: u32,
    /// The settings a new room gets where its creator names none (the `serve` settings:
    /// `QUEUE_ADMIT_BATCH`, ...).
    pub room_defaults: QueueSettings,
    /// How many rooms one scheduler check works on at once ([`ROOM_CHECKS_AT_ONCE`] by
    /// default; 1 checks them one after another, in room order).
    pub room_checks_at_once: usize,
}

impl Default for Policy {
    /// The contract's defaults: holds of 300 s, 4 live holds per user, keys kept a day; sweeps
    /// of 1,000 rows, 10 per tick.
    fn default() -> Self {
        Self {
            hold: Duration::seconds(300),
            max_holds_per_user: 4,
            idempotency_ttl: Duration::seconds(86_400),
            sweep_batch: 1_000,
            sweep_batches_per_tick: 10,
            room_defaults: QueueSettings::default(),
            room_checks_at_once: ROOM_CHECKS_AT_ONCE,
        }
    }
}

/// Every port the use cases need.
#[derive(Clone)]
pub struct Ports {
    /// The waiting queue.
    pub queue: Arc<dyn QueueStore>,
    /// The waiting room's live settings.
    pub settings: Arc<dyn SettingsStore>,
    /// Concerts, schedules, seats.
    pub catalogue: Arc<dyn CatalogueStore>,
    /// Seat holds.
    pub reservations: Arc<dyn ReservationStore>,
    /// Balances and ledger.
    pub accounts: Arc<dyn AccountStore>,
    /// The payment unit of work.
    pub payments: Arc<dyn PaymentStore>,
    /// Records of keyed requests.
    pub idempotency: Arc<dyn IdempotencyStore>,
    /// The operator log.
    pub audit: Arc<dyn AuditStore>,
    /// The rooms other than `main`.
    pub rooms: Arc<dyn RoomStore>,
    /// The waiting lines of the rooms other than `main` (`queue` is `main`'s).
    pub lines: Arc<dyn QueueLines>,
    /// Now.
    pub clock: Arc<dyn Clock>,
    /// New token values and ids.
    pub random: Arc<dyn Randomness>,
}

impl std::fmt::Debug for Ports {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Ports").finish_non_exhaustive()
    }
}

/// Proof that a request carries an ACTIVE, unexpired token. Only [`Ticketing::authorize`]
/// makes one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ActiveUser {
    user_id: UserId,
    token: QueueToken,
    room: RoomId,
}

impl ActiveUser {
    /// The token's user: the only identity protected calls act for.
    #[must_use]
    pub fn user_id(&self) -> UserId {
        self.user_id
    }

    /// The token that was presented.
    #[must_use]
    pub fn token(&self) -> &QueueToken {
        &self.token
    }

    /// The room the token was issued in: the only room whose concerts it opens.
    #[must_use]
    pub fn room(&self) -> &RoomId {
        &self.room
    }
}

/// The result of issuing a token.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IssuedToken {
    /// The token as the client sees it.
    pub view: TokenView,
    /// `true` for a new token (201), `false` for the user's existing one (200).
    pub created: bool,
}

/// What one scheduler tick did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TickReport {
    /// The admission outcome.
    pub admission: AdmissionOutcome,
    /// ACTIVE tokens expired.
    pub tokens_expired: u64,
    /// Lapsed holds released.
    pub holds_released: u64,
    /// Expired idempotency records purged.
    pub keys_purged: u64,
}

/// The ticketing use cases.
#[derive(Debug, Clone)]
pub struct Ticketing {
    ports: Ports,
    policy: Policy,
    sightings: Arc<Sightings>,
    /// The front door's queue calls without blocking, when the queue's store has such a client
    /// (see [`front`]).
    nonblocking: Option<Arc<dyn crate::ports::AsyncQueueLines>>,
}

impl Ticketing {
    /// Wires the use cases to their ports.
    #[must_use]
    pub fn new(ports: Ports, policy: Policy) -> Self {
        Self { ports, policy, sightings: Arc::default(), nonblocking: None }
    }

    /// Lets joining a line and polling a token go to `lines` without blocking (see `front`):
    /// `lines` must reach the same store as `ports.queue` and `ports.lines`.
    #[must_use]
    pub fn with_async_queue(mut self, lines: Arc<dyn crate::ports::AsyncQueueLines>) -> Self {
        self.nonblocking = Some(lines);
        self
    }

    /// The static settings in force.
    #[must_use]
    pub fn policy(&self) -> &Policy {
        &self.policy
    }

    /// The ports (for adapters' probes and tests).
    #[must_use]
    pub fn ports(&self) -> &Ports {
        &self.ports
    }

    fn now(&self) -> OffsetDateTime {
        self.ports.clock.now()
    }

    // ---- 1-3: the waiting queue ----------------------------------------------------------

    /// Step 1: gives the user a place in line, or their existing live token.
    ///
    /// # Errors
    /// [`IssueTokenError::Store`] when the store fails; nothing is stored then.
    #[instrument(skip(self), fields(user.id = %user))]
    pub fn issue_token(&self, user: UserId) -> Result<IssuedToken, IssueTokenError> {
        let step = self.plan_issue(user, front::Place::Main(self.ports.settings.load()?))?;
        let outcome = self.ports.queue.issue(step.user, step.value.clone(), step.now)?;
        Ok(self.finish_issue(&step, outcome))
    }

    /// Step 2: the token's status, position and estimated wait.
    ///
    /// # Errors
    /// [`ReadTokenError::Invalid`] for a malformed or unknown token; `Store` when the store
    /// fails.
    #[instrument(skip_all)]
    pub fn read_token(&self, bearer: &str) -> Result<TokenView, ReadTokenError> {
        let value = TokenValue::parse(bearer).map_err(|_| ReadTokenError::Invalid)?;
        if value.room_name() != RoomId::MAIN {
            return self.read_room_token(&value);
        }
        let place = front::Place::Main(self.ports.settings.load()?);
        let found = self.ports.queue.find_with_cursor(&value)?;
        self.finish_read(&place, found)
    }

    /// Step 2 without blocking: the answer of [`Ticketing::read_token`] when the ports can give
    /// it from memory (a cached WAITING token and the cached settings), `None` when the caller
    /// must call `read_token` on a thread that may block.
    #[must_use]
    pub fn read_token_in_memory(&self, bearer: &str) -> Option<Result<TokenView, ReadTokenError>> {
        let Ok(value) = TokenValue::parse(bearer) else {
            return Some(Err(ReadTokenError::Invalid));
        };
        if value.room_name() != RoomId::MAIN {
            return self.read_room_token_in_memory(&value);
        }
        let (token, cursor) = self.ports.queue.find_in_memory(&value)?;
        let settings = self.ports.settings.load_in_memory()?;
        Some(Ok(TokenView::of(token, &cursor, &settings, self.now())))
    }

    /// Checks a bearer token for a call that needs an ACTIVE one.
    ///
    /// # Errors
    /// `Invalid` (malformed or unknown), `Expired` (TTL reached or used by a payment),
    /// `NotActive` (still WAITING), or `Store`.
    #[instrument(skip_all)]
    pub fn authorize(&self, bearer: &str) -> Result<ActiveUser, AuthorizeError> {
        let token = self.known_token(bearer)?;
        active(token, self.now())
    }

    fn known_token(&self, bearer: &str) -> Result<QueueToken, AuthorizeError> {
        let value = TokenValue::parse(bearer).map_err(|_| AuthorizeError::Invalid)?;
        self.line(&value.room()).find(&value)?.ok_or(AuthorizeError::Invalid)
    }

    /// The waiting line of `room`.
    fn line(&self, room: &RoomId) -> Arc<dyn QueueStore> {
        if room.is_main() {
            self.ports.queue.clone()
        } else {
            self.ports.lines.line(room)
        }
    }

    /// Step 3: one admission tick (at most N oldest WAITING -> ACTIVE, at most once per M over
    /// all instances, on the store's clock), unless an operator paused admission. The settings
    /// are read at every tick, so a change applies at the next one.
    ///
    /// # Errors
    /// [`StoreError`] when the store fails; nothing is admitted then.
    pub fn admit(&self) -> Result<AdmissionOutcome, StoreError> {
        let settings = self.ports.settings.load()?;
        if settings.paused {
            return Ok(AdmissionOutcome::Paused);
        }
        self.ports.queue.admit(&settings.admission)
    }

    /// Step 3: expires ACTIVE tokens whose time is up, in batches.
    ///
    /// # Errors
    /// [`StoreError`] when the store fails (batches already done stay done).
    pub fn expire_tokens(&self) -> Result<u64, StoreError> {
        self.sweep(|limit| self.ports.queue.expire_tokens(limit))
    }

    /// Step 6: closes holds whose time is up (the seats are free again), in batches.
    ///
    /// # Errors
    /// [`StoreError`] when the store fails (batches already done stay done).
    pub fn release_holds(&self) -> Result<u64, StoreError> {
        let now = self.now();
        self.sweep(|limit| self.ports.reservations.release_lapsed(now, limit))
    }

    /// Deletes idempotency records past their time, in batches.
    ///
    /// # Errors
    /// [`StoreError`] when the store fails (batches already done stay done).
    pub fn purge_idempotency_keys(&self) -> Result<u64, StoreError> {
        let now = self.now();
        self.sweep(|limit| self.ports.idempotency.purge_expired(now, limit))
    }

    /// Runs `batch` until it changes fewer rows than a batch, at most
    /// `sweep_batches_per_tick` times.
    fn sweep(&self, batch: impl Fn(u32) -> Result<u64, StoreError>) -> Result<u64, StoreError> {
        let limit = self.policy.sweep_batch.max(1);
        let mut total = 0;
        for _ in 0..self.policy.sweep_batches_per_tick.max(1) {
            let n = batch(limit)?;
            total += n;
            if n < u64::from(limit) {
                break;
            }
        }
        Ok(total)
    }

    /// One full scheduler pass: admission, token expiry, hold release, key purge. Each part
    /// runs even if an earlier one failed; the first failure is returned after all were tried.
    ///
    /// # Errors
    /// The first [`StoreError`] met.
    pub fn tick(&self) -> Result<TickReport, StoreError> {
        let admission = self.admit();
        let expired = self.expire_tokens();
        let released = self.release_holds();
        let purged = self.purge_idempotency_keys();
        Ok(TickReport {
            admission: admission?,
            tokens_expired: expired?,
            holds_released: released?,
            keys_purged: purged?,
        })
    }

    // ---- 4: catalogue ----------------------------------------------------------------------

    /// Step 4: every concert.
    ///
    /// # Errors
    /// `Store` when the store fails.
    pub fn concerts(&self, who: &ActiveUser) -> Result<Vec<Concert>, ListConcertsError> {
        let concerts = self.ports.catalogue.concerts()?;
        let rooms = self.rooms_now()?;
        if rooms.is_empty() {
            return Ok(concerts);
        }
        Ok(concerts.into_iter().filter(|c| room_of(c.id, &rooms) == who.room).collect())
    }

    /// Step 4: a concert's schedules still open for booking, soonest first (the store applies
    /// [`ScheduleSummary::is_bookable_at`] and the order).
    ///
    /// # Errors
    /// `NotFound` for an unknown concert; `Store`.
    pub fn schedules(&self, who: &ActiveUser, concert: ConcertId) -> Result<Vec<ScheduleSummary>, ListSchedulesError> {
        let schedules = self.ports.catalogue.schedules(concert, self.now())?.ok_or(ListSchedulesError::NotFound)?;
        self.gate(who, Gate::Concert(concert))?
            .map_or(Ok(schedules), |room| Err(ListSchedulesError::RoomMismatch { room }))
    }

    /// Step 4: every seat of a schedule with its status now, by number.
    ///
    /// # Errors
    /// `NotFound` for an unknown schedule; `Store`.
    pub fn seats(&self, who: &ActiveUser, schedule: ScheduleId) -> Result<Vec<SeatView>, ListSeatsError> {
        let now = self.now();
        let records = self.ports.catalogue.seats(schedule)?.ok_or(ListSeatsError::NotFound)?;
        if let Some(room) = self.gate(who, Gate::Schedule(schedule))? {
            return Err(ListSeatsError::RoomMismatch { room });
        }
        Ok(records.into_iter().map(|r| SeatView { status: r.status_at(now), seat: r.seat }).collect())
    }

    // ---- 5: reservations -------------------------------------------------------------------

    /// Step 5: holds a seat for the token's user for [`Policy::hold`].
    ///
    /// # Errors
    /// `NotFound` (no such seat in that schedule, or it has started), `SeatUnavailable`
    /// (held or sold), `HoldLimit` (`MAX_HOLDS_PER_USER` live holds already), `Store`.
    #[instrument(skip(self, who), fields(user.id = %who.user_id, seat.id = %seat))]
    pub fn reserve(&self, who: &ActiveUser, schedule: ScheduleId, seat: SeatId) -> Result<Reservation, ReserveError> {
        if let Some(room) = self.gate(who, Gate::Schedule(schedule))? {
            return Err(ReserveError::RoomMismatch { room });
        }
        let now = self.now();
        let req = HoldRequest {
            reservation_id: ReservationId::from_uuid(self.ports.random.uuid()),
            user_id: who.user_id,
            schedule_id: schedule,
            seat_id: seat,
            now,
            held_until: now + self.policy.hold,
            max_live_holds: self.policy.max_holds_per_user,
        };
        match self.ports.reservations.hold(&req)? {
            HoldOutcome::Held(r) => Ok(r),
            HoldOutcome::SeatTaken => Err(ReserveError::SeatUnavailable),
            HoldOutcome::NoSuchSeat => Err(ReserveError::NotFound),
            HoldOutcome::HoldLimit => Err(ReserveError::HoldLimit { max: self.policy.max_holds_per_user }),
        }
    }

    /// A reservation of the token's user, its status as of now.
    ///
    /// # Errors
    /// `NotFound` for an unknown id or another user's reservation; `Store`.
    pub fn reservation(&self, who: &ActiveUser, id: ReservationId) -> Result<Reservation, GetReservationError> {
        let r = self
            .ports
            .reservations
            .find(id)?
            .filter(|r| r.user_id == who.user_id)
            .ok_or(GetReservationError::NotFound)?;
        Ok(r.as_of(self.now()))
    }

    // ---- 7: payment ------------------------------------------------------------------------

    /// Step 7: pays a held seat from the balance of the bearer token's user, all or nothing:
    /// debit, reservation PAID (so the seat is SOLD), payment and ledger entry recorded, and
    /// that token (no other) used up. A token pays once. With a key, a retry of a recorded
    /// payment gets its response again, whichever token of the user presents it, even though
    /// the payment used its token up.
    ///
    /// # Errors
    /// `TokenInvalid`, `TokenExpired`, `TokenNotActive`, `NotFound` (unknown or another
    /// user's), `HoldExpired`, `AlreadyPaid`, `InsufficientBalance`, `Key` (reused or
    /// in flight), `Store`; nothing changes on any of them.
    #[instrument(skip(self, bearer, idempotency), fields(reservation.id = %reservation))]
    pub fn pay(
        &self,
        bearer: &str,
        reservation: ReservationId,
        idempotency: Option<IdempotencyRequest<'_>>,
    ) -> Result<Outcome<Payment>, PayError> {
        let token = self.known_token(bearer)?;
        let user = token.user_id;
        let now = self.now();
        let fingerprint = Fingerprint::payment(reservation);
        if let Some(idem) = &idempotency {
            // Before the token check: the payment being retried may have used this token up.
            if let Some(record) = self.ports.idempotency.find(user, &idem.key, now)? {
                return replay(record, &fingerprint).map_err(|()| PayError::Key(crate::error::KeyConflict::Reused));
            }
        }
        let who = active(token, now)?;
        if let Some(room) = self.gate(&who, Gate::Reservation(reservation))? {
            return Err(PayError::RoomMismatch { room });
        }
        let request = PaymentRequest { reservation, user, token: who.token.value.clone() };
        let guard = idempotency.as_ref().map(|idem| self.guard(user, idem, &fingerprint, now));
        let claimed = self.ports.payments.pay(&request, guard.as_ref(), &mut |facts| {
            let ids = SettlementIds {
                payment: PaymentId::from_uuid(self.ports.random.uuid()),
                entry: LedgerEntryId::from_uuid(self.ports.random.uuid()),
            };
            // Read after the store took its locks: the TTL and the hold are judged as close to
            // the commit as the decision can be.
            settle(facts, &request, &who.token, self.now(), ids)
        })?;
        match claimed {
            Claimed::Done(settlement) => {
                // A payment store that holds the token used it up in the payment's transaction.
                // Otherwise the queue's own store (Redis) does it now; if that fails the token
                // stays ACTIVE until its TTL but can never pay again: the payment store recorded
                // it.
                if !settlement.uses_up_token {
                    if let Err(e) =
                        self.line(&settlement.token.room()).use_up(&settlement.token, settlement.payment.paid_at)
                    {
                        tracing::warn!(error = %e, "payment committed but its token could not be marked used; it cannot pay again and lapses at its TTL");
                    }
                }
                let recorded = guard.map(|g| (g.render)(&Effect::Paid(settlement.payment.clone())));
                Ok(Outcome::Fresh { value: settlement.payment, recorded })
            }
            Claimed::Recorded(record) => {
                replay(record, &fingerprint).map_err(|()| PayError::Key(crate::error::KeyConflict::Reused))
            }
            Claimed::InFlight => Err(PayError::Key(crate::error::KeyConflict::InFlight)),
        }
    }

    /// What a store needs to claim `idem` for `user` inside the effect's unit of work: the
    /// record is kept at least `IDEMPOTENCY_TTL_SECS`.
    fn guard<'a>(
        &self,
        user: UserId,
        idem: &'a IdempotencyRequest<'a>,
        fingerprint: &'a Fingerprint,
        now: OffsetDateTime,
    ) -> IdempotencyGuard<'a> {
        IdempotencyGuard {
            user,
            key: &idem.key,
            fingerprint,
            now,
            expires_at: now + self.policy.idempotency_ttl,
            render: idem.render,
        }
    }

    // ---- 8-9: balance ----------------------------------------------------------------------

    /// Step 8: the balance (0 for a user never charged).
    ///
    /// # Errors
    /// `Store` when the store fails.
    pub fn balance(&self, user: UserId) -> Result<Won, BalanceError> {
        Ok(self.ports.accounts.balance(user)?)
    }

    /// The user's balance history, newest first: at most `limit` entries (1..=100, default
    /// 50), older than the entry `before` when given.
    ///
    /// # Errors
    /// `InvalidLimit`, `UnknownBefore` (not an entry of this user), `Store`.
    pub fn balance_history(
        &self,
        user: UserId,
        before: Option<LedgerEntryId>,
        limit: Option<u32>,
    ) -> Result<LedgerPage, HistoryError> {
        let limit = limit.unwrap_or(HISTORY_PAGE_DEFAULT);
        if !HISTORY_PAGE.contains(&limit) {
            return Err(HistoryError::InvalidLimit);
        }
        // One more than the page: whether there is a next page without a count.
        let query = LedgerQuery { before, limit: limit + 1 };
        let mut entries = self.ports.accounts.ledger(user, &query)?.ok_or(HistoryError::UnknownBefore)?;
        let more = entries.len() > limit as usize;
        entries.truncate(limit as usize);
        let next_before = if more { entries.last().map(|e| e.id) } else { None };
        Ok(LedgerPage { entries, next_before })
    }

    /// Step 9: adds `amount` won to the balance. With a key, a retry of a recorded charge gets
    /// its response again and changes nothing.
    ///
    /// # Errors
    /// `InvalidAmount` outside `1..=1_000_000_000`, `BalanceLimit` if the balance would pass
    /// 10,000,000,000, `Key` (reused or in flight), `Store`; nothing changes on any of them.
    #[instrument(skip(self, idempotency), fields(user.id = %user))]
    pub fn charge(
        &self,
        user: UserId,
        amount: i64,
        idempotency: Option<IdempotencyRequest<'_>>,
    ) -> Result<Outcome<Won>, ChargeError> {
        let amount = ChargeAmount::new(amount).map_err(|_| ChargeError::InvalidAmount)?.won();
        let now = self.now();
        let fingerprint = Fingerprint::charge(user, amount);
        let guard = idempotency.as_ref().map(|idem| self.guard(user, idem, &fingerprint, now));
        let req = CreditRequest {
            user,
            amount,
            limit: BALANCE_LIMIT,
            entry: LedgerEntryId::from_uuid(self.ports.random.uuid()),
            at: now,
        };
        match self.ports.accounts.credit(&req, guard.as_ref())? {
            Claimed::Done(CreditOutcome::Credited(balance)) => {
                let recorded = guard.map(|g| (g.render)(&Effect::Charged { user, balance }));
                Ok(Outcome::Fresh { value: balance, recorded })
            }
            Claimed::Done(CreditOutcome::LimitExceeded(balance)) => Err(ChargeError::BalanceLimit { balance, amount }),
            Claimed::Recorded(record) => {
                replay(record, &fingerprint).map_err(|()| ChargeError::Key(crate::error::KeyConflict::Reused))
            }
            Claimed::InFlight => Err(ChargeError::Key(crate::error::KeyConflict::InFlight)),
        }
    }

    // ---- operator --------------------------------------------------------------------------

    /// The waiting room for an operator: counts, cursor, settings in force, next admission.
    ///
    /// # Errors
    /// [`StoreError`] when a store fails.
    pub fn queue_state(&self) -> Result<QueueState, StoreError> {
        let settings = self.ports.settings.load()?;
        Ok(QueueState::of(self.ports.queue.stats()?, settings))
    }

    /// Changes the waiting room's live settings for every instance (applied at each one's next
    /// scheduler check) and logs the change once, with who made it.
    ///
    /// # Errors
    /// `Store` when a store fails; nothing changes then.
    pub fn update_queue(&self, actor: &str, patch: &SettingsPatch) -> Result<QueueState, UpdateQueueError> {
        let (before, after) = self.ports.settings.update(patch, Some(&self.note(actor)))?;
        tracing::info!(actor, action = "queue.update", before = %before, after = %after, "operator changed the waiting room");
        Ok(QueueState::of(self.ports.queue.stats()?, after))
    }

    /// Creates a concert with its schedules and seats, all or nothing, and logs it once.
    ///
    /// # Errors
    /// `Invalid` (a catalogue rule, nothing stored), `Store`.
    pub fn create_concert(&self, actor: &str, draft: &ConcertDraft) -> Result<NewConcert, CreateConcertError> {
        let concert = draft.validate(self.now(), self.ports.random.as_ref())?;
        if !self.ports.catalogue.create_concert(&concert, Some(&self.note(actor)))? {
            return Err(StoreError::Internal(format!("concert id {} already taken", concert.concert.id)).into());
        }
        tracing::info!(
            actor,
            action = "concert.create",
            concert.id = %concert.concert.id,
            title = %concert.concert.title,
            schedules = concert.schedules.len(),
            seats = concert.schedules.iter().map(|s| s.seats.len()).sum::<usize>(),
            "operator created a concert"
        );
        Ok(concert)
    }

    /// Adds a schedule with its seats to a concert, all or nothing, and logs it once.
    ///
    /// # Errors
    /// `NotFound` (unknown concert), `Invalid` (a catalogue rule; nothing stored), `Store`.
    pub fn add_schedule(
        &self,
        actor: &str,
        concert: ConcertId,
        draft: &ScheduleDraft,
    ) -> Result<NewSchedule, AddScheduleError> {
        let schedule = draft.validate(concert, self.now(), self.ports.random.as_ref())?;
        match self.ports.catalogue.add_schedule(&schedule, Some(&self.note(actor)))? {
            AddSchedule::Added => {}
            AddSchedule::NoSuchConcert => return Err(AddScheduleError::NotFound),
            AddSchedule::AlreadyExists => {
                return Err(StoreError::Internal(format!("schedule id {} already taken", schedule.id)).into())
            }
        }
        tracing::info!(
            actor,
            action = "schedule.create",
            concert.id = %concert,
            schedule.id = %schedule.id,
            starts_at = %schedule.starts_at,
            seats = schedule.seats.len(),
            "operator added a schedule"
        );
        Ok(schedule)
    }

    /// Who makes an operator's change, and when: the line the store logs with it.
    fn note(&self, actor: &str) -> OperatorNote {
        OperatorNote { actor: actor.to_owned(), at: self.now() }
    }

    /// The operator log, newest first: at most `limit` lines (1..=100, default 50), older than
    /// line `before` when given.
    ///
    /// # Errors
    /// `InvalidLimit`, `Store`.
    pub fn audit_log(&self, before: Option<i64>, limit: Option<u32>) -> Result<AuditPage, AuditLogError> {
        let limit = limit.unwrap_or(AUDIT_PAGE_DEFAULT);
        if !AUDIT_PAGE.contains(&limit) {
            return Err(AuditLogError::InvalidLimit);
        }
        // One line more than the page tells whether there is another page.
        let mut entries = self.ports.audit.audit_log(before, limit + 1)?;
        let more = entries.len() > usize::try_from(limit).unwrap_or(usize::MAX);
        entries.truncate(usize::try_from(limit).unwrap_or(usize::MAX));
        let next_before = if more { entries.last().map(|e| e.seq) } else { None };
        Ok(AuditPage { entries, next_before })
    }

    /// Every concert, whichever room sells it (the operator's list).
    ///
    /// # Errors
    /// When the store fails.
    pub fn all_concerts(&self) -> Result<Vec<Concert>, StoreError> {
        self.ports.catalogue.concerts()
    }

    /// A concert's sales per schedule as of now.
    ///
    /// # Errors
    /// `NotFound` for an unknown concert; `Store`.
    pub fn sales(&self, concert: ConcertId) -> Result<Vec<ScheduleSales>, SalesError> {
        self.ports.catalogue.sales(concert, self.now())?.ok_or(SalesError::NotFound)
    }
}

/// The token must be ACTIVE at `now`.
fn active(token: QueueToken, now: OffsetDateTime) -> Result<ActiveUser, AuthorizeError> {
    match token.status_at(now) {
        TokenStatus::Active => Ok(ActiveUser { user_id: token.user_id, room: token.value.room(), token }),
        TokenStatus::Waiting => Err(AuthorizeError::NotActive),
        TokenStatus::Expired => Err(AuthorizeError::Expired),
    }
}

/// A recorded key's answer for this request, or `Err(())` when the key was used for another.
fn replay<T>(record: IdempotencyRecord, fingerprint: &Fingerprint) -> Result<Outcome<T>, ()> {
    match record.replay_for(fingerprint) {
        Replay::Same(response) => Ok(Outcome::Replayed(response)),
        Replay::Reused => Err(()),
    }
}
