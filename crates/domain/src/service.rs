//! The use cases, one method per step of the product's sequence diagrams.
//!
//! [`Ticketing`] owns the ports and the policy; adapters call it (HTTP handlers through
//! `web::block`, the scheduler through `spawn_blocking`). Steps 4-7 take an [`ActiveUser`],
//! which only [`Ticketing::authorize`] can make, so "an ACTIVE token is required" is enforced
//! by the type system rather than remembered by each handler.

use std::sync::Arc;

use time::Duration;
use tracing::instrument;

use crate::account::{CreditOutcome, LedgerEntry, LedgerKind};
use crate::catalogue::{Concert, ScheduleSummary, SeatView};
use crate::clock::Clock;
use crate::error::{
    AuthorizeError, BalanceError, ChargeError, GetReservationError, IssueTokenError, ListConcertsError,
    ListSchedulesError, ListSeatsError, PayError, ReadTokenError, ReserveError,
};
use crate::ids::{ConcertId, LedgerEntryId, PaymentId, ReservationId, ScheduleId, SeatId, UserId};
use crate::money::{ChargeAmount, Won, BALANCE_LIMIT};
use crate::payment::Payment;
use crate::ports::{
    AccountStore, CatalogueStore, DebitOutcome, PaymentUnitOfWork, QueueStore, ReservationStore, StoreError,
};
use crate::queue::{AdmissionOutcome, AdmissionPolicy, QueueToken, TokenGenerator, TokenStatus, TokenValue, TokenView};
use crate::reservation::{HoldOutcome, HoldRequest, Reservation, ReservationStatus};

/// The business settings.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Policy {
    /// How the waiting room admits people.
    pub admission: AdmissionPolicy,
    /// How long a reservation holds a seat unpaid.
    pub hold: Duration,
}

impl Default for Policy {
    /// The contract's defaults: N = 100 every M = 60 s, ACTIVE for 600 s, holds of 300 s.
    fn default() -> Self {
        Self {
            admission: AdmissionPolicy {
                batch: 100,
                interval: Duration::seconds(60),
                active_ttl: Duration::seconds(600),
                max_active: None,
            },
            hold: Duration::seconds(300),
        }
    }
}

/// Every port the use cases need.
#[derive(Clone)]
pub struct Ports {
    /// The waiting queue.
    pub queue: Arc<dyn QueueStore>,
    /// Concerts, schedules, seats.
    pub catalogue: Arc<dyn CatalogueStore>,
    /// Seat holds.
    pub reservations: Arc<dyn ReservationStore>,
    /// Balances and ledger.
    pub accounts: Arc<dyn AccountStore>,
    /// The payment transaction.
    pub payments: Arc<dyn PaymentUnitOfWork>,
    /// Now.
    pub clock: Arc<dyn Clock>,
    /// New token values.
    pub tokens: Arc<dyn TokenGenerator>,
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
}

/// The ticketing use cases.
#[derive(Debug, Clone)]
pub struct Ticketing {
    ports: Ports,
    policy: Policy,
}

impl Ticketing {
    /// Wires the use cases to their ports.
    #[must_use]
    pub fn new(ports: Ports, policy: Policy) -> Self {
        Self { ports, policy }
    }

    /// The settings in force.
    #[must_use]
    pub fn policy(&self) -> &Policy {
        &self.policy
    }

    /// The clock the use cases read.
    #[must_use]
    pub fn clock(&self) -> &Arc<dyn Clock> {
        &self.ports.clock
    }

    // ---- 1-3: the waiting queue ----------------------------------------------------------

    /// Step 1: gives the user a place in line, or their existing live token.
    ///
    /// # Errors
    /// [`IssueTokenError::Store`] when the store fails.
    #[instrument(skip(self), fields(user.id = %user))]
    pub fn issue_token(&self, user: UserId) -> Result<IssuedToken, IssueTokenError> {
        let now = self.ports.clock.now();
        let value = self.ports.tokens.generate();
        let outcome = self.ports.queue.issue(user, value, now)?;
        let cursor = self.ports.queue.cursor()?;
        Ok(IssuedToken {
            view: TokenView::of(outcome.token, &cursor, &self.policy.admission, now),
            created: outcome.created,
        })
    }

    /// Step 2: the token's status, position and estimated wait.
    ///
    /// # Errors
    /// [`ReadTokenError::Invalid`] for a malformed or unknown token; `Store` when the store
    /// fails.
    #[instrument(skip_all)]
    pub fn read_token(&self, bearer: &str) -> Result<TokenView, ReadTokenError> {
        let value = TokenValue::parse(bearer).map_err(|_| ReadTokenError::Invalid)?;
        let (token, cursor) = self.ports.queue.find_with_cursor(&value)?.ok_or(ReadTokenError::Invalid)?;
        Ok(TokenView::of(token, &cursor, &self.policy.admission, self.ports.clock.now()))
    }

    /// Checks a bearer token for a call that needs an ACTIVE one.
    ///
    /// # Errors
    /// `Invalid` (malformed or unknown), `Expired` (TTL reached or used by a payment),
    /// `NotActive` (still WAITING), or `Store`.
    #[instrument(skip_all)]
    pub fn authorize(&self, bearer: &str) -> Result<ActiveUser, AuthorizeError> {
        let value = TokenValue::parse(bearer).map_err(|_| AuthorizeError::Invalid)?;
        let token = self.ports.queue.find(&value)?.ok_or(AuthorizeError::Invalid)?;
        match token.status_at(self.ports.clock.now()) {
            TokenStatus::Active => Ok(ActiveUser { user_id: token.user_id, token }),
            TokenStatus::Waiting => Err(AuthorizeError::NotActive),
            TokenStatus::Expired => Err(AuthorizeError::Expired),
        }
    }

    /// Step 3: one admission tick (at most N oldest WAITING -> ACTIVE, at most once per M over
    /// all instances).
    ///
    /// # Errors
    /// [`StoreError`] when the store fails; nothing is admitted then.
    pub fn admit(&self) -> Result<AdmissionOutcome, StoreError> {
        self.ports.queue.admit(&self.policy.admission, self.ports.clock.now())
    }

    /// Step 3: expires ACTIVE tokens whose time is up.
    ///
    /// # Errors
    /// [`StoreError`] when the store fails.
    pub fn expire_tokens(&self) -> Result<u64, StoreError> {
        self.ports.queue.expire_tokens(self.ports.clock.now())
    }

    /// Step 6: closes holds whose time is up (the seats are free again).
    ///
    /// # Errors
    /// [`StoreError`] when the store fails.
    pub fn release_holds(&self) -> Result<u64, StoreError> {
        self.ports.reservations.release_lapsed(self.ports.clock.now())
    }

    /// One full scheduler pass: admission, token expiry, hold release. Each part runs even if
    /// an earlier one failed; the first failure is returned after all were tried.
    ///
    /// # Errors
    /// The first [`StoreError`] met.
    pub fn tick(&self) -> Result<TickReport, StoreError> {
        let admission = self.admit();
        let expired = self.expire_tokens();
        let released = self.release_holds();
        Ok(TickReport { admission: admission?, tokens_expired: expired?, holds_released: released? })
    }

    // ---- 4: catalogue ----------------------------------------------------------------------

    /// Step 4: every concert.
    ///
    /// # Errors
    /// `Store` when the store fails.
    pub fn concerts(&self, _who: &ActiveUser) -> Result<Vec<Concert>, ListConcertsError> {
        Ok(self.ports.catalogue.concerts()?)
    }

    /// Step 4: a concert's schedules still open for booking, soonest first.
    ///
    /// # Errors
    /// `NotFound` for an unknown concert; `Store`.
    pub fn schedules(&self, _who: &ActiveUser, concert: ConcertId) -> Result<Vec<ScheduleSummary>, ListSchedulesError> {
        let now = self.ports.clock.now();
        let mut list = self.ports.catalogue.schedules(concert, now)?.ok_or(ListSchedulesError::NotFound)?;
        list.retain(|s| s.is_bookable_at(now));
        list.sort_by_key(|s| s.starts_at);
        Ok(list)
    }

    /// Step 4: every seat of a schedule with its status now.
    ///
    /// # Errors
    /// `NotFound` for an unknown schedule; `Store`.
    pub fn seats(&self, _who: &ActiveUser, schedule: ScheduleId) -> Result<Vec<SeatView>, ListSeatsError> {
        let now = self.ports.clock.now();
        let records = self.ports.catalogue.seats(schedule)?.ok_or(ListSeatsError::NotFound)?;
        let mut seats: Vec<SeatView> =
            records.into_iter().map(|r| SeatView { status: r.status_at(now), seat: r.seat }).collect();
        seats.sort_by_key(|s| s.seat.number);
        Ok(seats)
    }

    // ---- 5: reservations -------------------------------------------------------------------

    /// Step 5: holds a seat for the token's user for [`Policy::hold`].
    ///
    /// # Errors
    /// `NotFound` (no such seat in that schedule, or it has started), `SeatUnavailable`
    /// (held or sold), `Store`.
    #[instrument(skip(self, who), fields(user.id = %who.user_id, seat.id = %seat))]
    pub fn reserve(&self, who: &ActiveUser, schedule: ScheduleId, seat: SeatId) -> Result<Reservation, ReserveError> {
        let now = self.ports.clock.now();
        let req = HoldRequest {
            reservation_id: ReservationId::random(),
            user_id: who.user_id,
            schedule_id: schedule,
            seat_id: seat,
            now,
            held_until: now + self.policy.hold,
        };
        match self.ports.reservations.hold(&req)? {
            HoldOutcome::Held(r) => Ok(r),
            HoldOutcome::SeatTaken => Err(ReserveError::SeatUnavailable),
            HoldOutcome::NoSuchSeat => Err(ReserveError::NotFound),
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
        Ok(r.as_of(self.ports.clock.now()))
    }

    // ---- 7: payment ------------------------------------------------------------------------

    /// Step 7: pays a held seat from the user's balance. All or nothing: debit, reservation
    /// PAID (so the seat is SOLD), payment and ledger entry recorded, the payer's token
    /// EXPIRED.
    ///
    /// # Errors
    /// `NotFound` (unknown or another user's), `HoldExpired`, `AlreadyPaid`,
    /// `InsufficientBalance`, `Store`; nothing changes on any of them.
    #[instrument(skip(self, who), fields(user.id = %who.user_id, reservation.id = %reservation))]
    pub fn pay(&self, who: &ActiveUser, reservation: ReservationId) -> Result<Payment, PayError> {
        let now = self.ports.clock.now();
        let user = who.user_id;
        self.ports.payments.run(&mut |tx| {
            let r = tx.lock_reservation(reservation)?.filter(|r| r.user_id == user).ok_or(PayError::NotFound)?;
            match r.status_at(now) {
                ReservationStatus::Paid => return Err(PayError::AlreadyPaid),
                ReservationStatus::Expired => return Err(PayError::HoldExpired),
                ReservationStatus::Held => {}
            }
            let balance_after = match tx.debit(user, r.price)? {
                DebitOutcome::Debited(after) => after,
                DebitOutcome::Insufficient(balance) => {
                    return Err(PayError::InsufficientBalance { balance, price: r.price })
                }
            };
            let payment = Payment {
                id: PaymentId::random(),
                reservation_id: r.id,
                user_id: user,
                amount: r.price,
                balance_after,
                paid_at: now,
            };
            tx.mark_paid(r.id, now)?;
            tx.record_payment(&payment)?;
            tx.append_ledger(&LedgerEntry {
                id: LedgerEntryId::random(),
                user_id: user,
                kind: LedgerKind::Payment,
                amount: Won::new(-r.price.get()),
                balance_after,
                at: now,
                payment_id: Some(payment.id),
                reservation_id: Some(r.id),
            })?;
            tx.expire_tokens_of(user, now)?;
            Ok(payment)
        })
    }

    // ---- 8-9: balance ----------------------------------------------------------------------

    /// Step 8: the balance (0 for a user never charged).
    ///
    /// # Errors
    /// `Store` when the store fails.
    pub fn balance(&self, user: UserId) -> Result<Won, BalanceError> {
        Ok(self.ports.accounts.balance(user)?)
    }

    /// The user's ledger, oldest first.
    ///
    /// # Errors
    /// `Store` when the store fails.
    pub fn ledger(&self, user: UserId) -> Result<Vec<LedgerEntry>, BalanceError> {
        Ok(self.ports.accounts.ledger(user)?)
    }

    /// Step 9: adds `amount` won to the balance.
    ///
    /// # Errors
    /// `InvalidAmount` outside `1..=1_000_000_000`, `BalanceLimit` if the balance would pass
    /// 10,000,000,000 (nothing changes), `Store`.
    #[instrument(skip(self), fields(user.id = %user))]
    pub fn charge(&self, user: UserId, amount: i64) -> Result<Won, ChargeError> {
        let amount = ChargeAmount::new(amount).map_err(|_| ChargeError::InvalidAmount)?.won();
        let now = self.ports.clock.now();
        match self.ports.accounts.credit(user, amount, BALANCE_LIMIT, LedgerEntryId::random(), now)? {
            CreditOutcome::Credited(balance) => Ok(balance),
            CreditOutcome::LimitExceeded(balance) => Err(ChargeError::BalanceLimit { balance, amount }),
        }
    }
}
