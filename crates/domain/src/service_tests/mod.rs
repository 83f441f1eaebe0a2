//! Unit tests of every use-case rule in [`crate::service`], against mockall mocks of the ports
//! and small hand-written fakes of the two ports mockall cannot mock (their guard and decision
//! arguments): each error variant and each boundary instant. No test asserts the order of port
//! calls: a use case is judged by what it returns and by what it passed, or did not pass, to a
//! port.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, PoisonError};

use mockall::predicate::eq;
use time::{Duration, OffsetDateTime};

use crate::account::{CreditOutcome, CreditRequest, LedgerEntry, LedgerKind, LedgerQuery};
use crate::catalogue::{
    AddSchedule, Concert, ConcertDraft, ScheduleDraft, ScheduleSales, ScheduleSummary, Seat, SeatClaim, SeatDraft,
    SeatRecord, SeatStatus,
};
use crate::clock::{Clock, ManualClock, MockClock};
use crate::error::{
    AddScheduleError, AuthorizeError, BalanceError, ChargeError, CreateConcertError, GetReservationError, HistoryError,
    IssueTokenError, ListConcertsError, ListSchedulesError, ListSeatsError, PayError, ReadTokenError, ReserveError,
    SalesError, StoreError, UpdateQueueError,
};
use crate::idempotency::{
    Claimed, Effect, Fingerprint, IdempotencyGuard, IdempotencyKey, IdempotencyRecord, IdempotencyRequest, Outcome,
    StoredResponse,
};
use crate::ids::{ConcertId, LedgerEntryId, ReservationId, ScheduleId, SeatId, UserId};
use crate::money::{Won, BALANCE_LIMIT};
use crate::payment::{PaymentFacts, PaymentRequest, Settlement};
use crate::ports::{
    AccountStore, Decide, IssueOutcome, MockAuditStore, MockCatalogueStore, MockIdempotencyStore, MockQueueStore,
    MockReservationStore, MockRoomStore, MockSettingsStore, PaymentStore,
};
use crate::queue::{
    AdmissionOutcome, AdmissionPolicy, QueueCursor, QueueSettings, QueueStats, QueueToken, SettingsChange,
    SettingsPatch, TokenStatus, TokenValue,
};
use crate::random::{MockRandomness, Randomness as _, SeededRandom};
use crate::reservation::{HoldOutcome, HoldRequest, Reservation, ReservationStatus};
use crate::service::{ActiveUser, Policy, Ports, TickReport, Ticketing};

// ---- fixtures ----------------------------------------------------------------------------------

fn t0() -> OffsetDateTime {
    OffsetDateTime::from_unix_timestamp(1_893_456_000).unwrap()
}

fn secs(n: i64) -> Duration {
    Duration::seconds(n)
}

fn id() -> uuid::Uuid {
    static IDS: SeededRandom = SeededRandom::new(7);
    IDS.uuid()
}

fn value() -> TokenValue {
    TokenValue::from_bytes([0x5a; 32])
}

fn down() -> StoreError {
    StoreError::Unavailable("connection refused".into())
}

fn user() -> UserId {
    UserId::from_uuid(id())
}

fn waiting(user: UserId, seq: i64) -> QueueToken {
    QueueToken::new_waiting(value(), user, seq, t0() - secs(30))
}

fn active(user: UserId, expires_at: OffsetDateTime) -> QueueToken {
    QueueToken {
        status: TokenStatus::Active,
        activated_at: Some(expires_at - secs(600)),
        expires_at: Some(expires_at),
        ..waiting(user, 1)
    }
}

fn reservation(user: UserId, status: ReservationStatus, held_until: OffsetDateTime) -> Reservation {
    Reservation {
        id: ReservationId::from_uuid(id()),
        user_id: user,
        schedule_id: ScheduleId::from_uuid(id()),
        seat_id: SeatId::from_uuid(id()),
        seat_number: 7,
        price: Won::new(150_000),
        status,
        created_at: held_until - secs(300),
        held_until,
        paid_at: None,
    }
}

fn settings(batch: u32) -> QueueSettings {
    QueueSettings {
        paused: false,
        admission: AdmissionPolicy {
            batch,
            interval: secs(60),
            active_ttl: secs(600),
            max_active: None,
            abandon_after: None,
        },
    }
}

fn render(effect: &Effect) -> StoredResponse {
    match effect {
        Effect::Charged { balance, .. } => StoredResponse { status: 200, body: format!("charged {}", balance.get()) },
        Effect::Paid(p) => StoredResponse { status: 201, body: format!("paid {}", p.id) },
    }
}

fn key(s: &str) -> IdempotencyKey {
    IdempotencyKey::parse(s).unwrap()
}

fn keyed(s: &str) -> Option<IdempotencyRequest<'static>> {
    Some(IdempotencyRequest { key: key(s), render: &render })
}

fn record(fingerprint: Fingerprint, body: &str) -> IdempotencyRecord {
    IdempotencyRecord { fingerprint, response: StoredResponse { status: 201, body: body.into() } }
}

/// What a fake store saw of a guard.
#[derive(Debug, Clone, PartialEq, Eq)]
struct GuardSeen {
    user: UserId,
    key: IdempotencyKey,
    fingerprint: Fingerprint,
    now: OffsetDateTime,
    expires_at: OffsetDateTime,
}

impl GuardSeen {
    fn of(g: &IdempotencyGuard<'_>) -> Self {
        Self {
            user: g.user,
            key: g.key.clone(),
            fingerprint: g.fingerprint.clone(),
            now: g.now,
            expires_at: g.expires_at,
        }
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

/// An [`AccountStore`] that answers what it is told and records what it was asked.
struct FakeAccounts {
    balance: Result<Won, StoreError>,
    credit: Result<Claimed<CreditOutcome>, StoreError>,
    ledger: Result<Option<Vec<LedgerEntry>>, StoreError>,
    credits: Mutex<Vec<(CreditRequest, Option<GuardSeen>)>>,
    queries: Mutex<Vec<(UserId, LedgerQuery)>>,
}

impl Default for FakeAccounts {
    fn default() -> Self {
        let unset = || StoreError::Internal("not expected in this test".into());
        Self {
            balance: Err(unset()),
            credit: Err(unset()),
            ledger: Err(unset()),
            credits: Mutex::new(Vec::new()),
            queries: Mutex::new(Vec::new()),
        }
    }
}

impl AccountStore for FakeAccounts {
    fn balance(&self, _user: UserId) -> Result<Won, StoreError> {
        self.balance.clone()
    }

    fn credit(
        &self,
        req: &CreditRequest,
        guard: Option<&IdempotencyGuard<'_>>,
    ) -> Result<Claimed<CreditOutcome>, StoreError> {
        lock(&self.credits).push((*req, guard.map(GuardSeen::of)));
        self.credit.clone()
    }

    fn ledger(&self, user: UserId, query: &LedgerQuery) -> Result<Option<Vec<LedgerEntry>>, StoreError> {
        lock(&self.queries).push((user, *query));
        self.ledger.clone()
    }
}

/// A [`PaymentStore`] that "reads" the facts it is given, optionally lets time pass while it
/// takes its locks, calls `decide` once and "applies" what it returns, recording everything.
#[derive(Default)]
struct FakePayments {
    /// The facts read; `None` makes any call a test failure.
    facts: Option<PaymentFacts>,
    /// Answered at the claim step, before the read (a record, or in flight).
    claimed: Option<Claimed<Settlement>>,
    /// The store fails.
    failure: Option<StoreError>,
    /// Time that passes between the caller's authorization and the decision.
    lock_wait: Option<(ManualClock, Duration)>,
    seen: Mutex<Vec<(PaymentRequest, Option<GuardSeen>)>>,
    decisions: Mutex<Vec<Result<Settlement, PayError>>>,
}

impl PaymentStore for FakePayments {
    fn pay(
        &self,
        req: &PaymentRequest,
        guard: Option<&IdempotencyGuard<'_>>,
        decide: &mut Decide<'_>,
    ) -> Result<Claimed<Settlement>, PayError> {
        lock(&self.seen).push((req.clone(), guard.map(GuardSeen::of)));
        if let Some(e) = &self.failure {
            return Err(PayError::Store(e.clone()));
        }
        if let Some(claimed) = &self.claimed {
            return Ok(claimed.clone());
        }
        if let Some((clock, by)) = &self.lock_wait {
            clock.advance(*by);
        }
        let facts =
            self.facts.as_ref().ok_or_else(|| PayError::Store(StoreError::Internal("unexpected pay".into())))?;
        let decision = decide(facts);
        lock(&self.decisions).push(decision.clone());
        decision.map(Claimed::Done)
    }
}

/// The mocks and fakes of one test, configured before [`World::app`] wires them.
struct World {
    queue: MockQueueStore,
    settings: MockSettingsStore,
    catalogue: MockCatalogueStore,
    reservations: MockReservationStore,
    accounts: Arc<FakeAccounts>,
    payments: Arc<FakePayments>,
    idempotency: MockIdempotencyStore,
    random: MockRandomness,
    clock: Option<Arc<dyn Clock>>,
    now: OffsetDateTime,
    policy: Policy,
}

impl World {
    fn new() -> Self {
        let mut random = MockRandomness::new();
        random.expect_uuid().returning(id);
        Self {
            queue: MockQueueStore::new(),
            settings: MockSettingsStore::new(),
            catalogue: MockCatalogueStore::new(),
            reservations: MockReservationStore::new(),
            accounts: Arc::new(FakeAccounts::default()),
            payments: Arc::new(FakePayments::default()),
            idempotency: MockIdempotencyStore::new(),
            random,
            clock: None,
            now: t0(),
            policy: Policy::default(),
        }
    }

    /// The settings store answers `settings`.
    fn with_settings(mut self, settings: QueueSettings) -> Self {
        self.settings.expect_load().returning(move || Ok(settings));
        self
    }

    /// `value()` is a token of `user` that `find` returns as `token`.
    fn with_token(mut self, token: QueueToken) -> Self {
        self.queue.expect_find().with(eq(value())).returning(move |_| Ok(Some(token.clone())));
        self
    }

    fn accounts(mut self, accounts: FakeAccounts) -> Self {
        self.accounts = Arc::new(accounts);
        self
    }

    fn payments(mut self, payments: FakePayments) -> Self {
        self.payments = Arc::new(payments);
        self
    }

    fn app(self) -> Ticketing {
        let clock = self.clock.unwrap_or_else(|| {
            let mut clock = MockClock::new();
            clock.expect_now().return_const(self.now);
            Arc::new(clock)
        });
        let ports = Ports {
            queue: Arc::new(self.queue),
            settings: Arc::new(self.settings),
            catalogue: Arc::new(self.catalogue),
            reservations: Arc::new(self.reservations),
            accounts: self.accounts,
            payments: self.payments,
            idempotency: Arc::new(self.idempotency),
            audit: Arc::new(MockAuditStore::new()),
            rooms: Arc::new(no_rooms()),
            lines: Arc::new(NoLines),
            clock,
            random: Arc::new(self.random),
        };
        Ticketing::new(ports, self.policy)
    }
}

/// No room but `main`.
fn no_rooms() -> MockRoomStore {
    let mut rooms = MockRoomStore::new();
    rooms.expect_rooms_in_memory().returning(|| None);
    rooms.expect_rooms().returning(|| Ok(Vec::new()));
    rooms
}

/// Lines of rooms other than `main`: none is ever asked for here.
struct NoLines;

impl crate::ports::QueueLines for NoLines {
    fn line(&self, _room: &crate::room::RoomId) -> Arc<dyn crate::ports::QueueStore> {
        Arc::new(MockQueueStore::new())
    }
}

fn authorized(app: &Ticketing) -> ActiveUser {
    app.authorize(value().as_str()).unwrap()
}

/// Returns `answers` one by one, then 0, and counts the calls.
fn batches(answers: &'static [u64], calls: &Arc<AtomicUsize>) -> impl Fn() -> Result<u64, StoreError> + Send {
    let calls = calls.clone();
    move || {
        let i = calls.fetch_add(1, Ordering::SeqCst);
        Ok(answers.get(i).copied().unwrap_or(0))
    }
}

mod balance;
mod catalogue;
mod front;
mod operator;
mod payment;
mod queue;
mod reservations;
