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
    AccountStore, Decide, IssueOutcome, MockCatalogueStore, MockIdempotencyStore, MockQueueStore, MockReservationStore,
    MockSettingsStore, PaymentStore,
};
use crate::queue::{
    AdmissionOutcome, AdmissionPolicy, QueueCursor, QueueSettings, QueueStats, QueueToken, SettingsPatch, TokenStatus,
    TokenValue,
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
        admission: AdmissionPolicy { batch, interval: secs(60), active_ttl: secs(600), max_active: None },
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
            clock,
            random: Arc::new(self.random),
        };
        Ticketing::new(ports, self.policy)
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

// ---- 1: issue ----------------------------------------------------------------------------------

#[test]
fn issue_stores_a_new_token_with_a_fresh_value_at_now_and_reports_created() {
    let who = user();
    let mut w = World::new().with_settings(settings(100));
    w.random.expect_token().times(1).returning(value);
    let stored = QueueToken::new_waiting(value(), who, 4, t0());
    let returned = stored.clone();
    let cursor = QueueCursor { admitted_through: 1, last_admission_at: Some(t0() - secs(20)), epoch: 0 };
    w.queue
        .expect_issue()
        .with(eq(who), eq(value()), eq(t0()))
        .times(1)
        .returning(move |_, _, _| Ok(IssueOutcome { token: returned.clone(), created: true, cursor }));
    let issued = w.app().issue_token(who).unwrap();
    assert!(issued.created);
    assert_eq!(issued.view.token, stored);
    assert_eq!((issued.view.status, issued.view.position, issued.view.paused), (TokenStatus::Waiting, 3, false));
    assert_eq!(issued.view.estimated_wait_secs, 40, "the next tick in 40 s admits positions 1..=100");
}

#[test]
fn issue_returns_the_existing_token_as_not_created() {
    let who = user();
    let mut w = World::new().with_settings(settings(100));
    w.random.expect_token().returning(|| TokenValue::from_bytes([1; 32]));
    let existing = active(who, t0() + secs(100));
    let returned = existing.clone();
    w.queue.expect_issue().returning(move |_, _, _| {
        Ok(IssueOutcome { token: returned.clone(), created: false, cursor: QueueCursor::default() })
    });
    let issued = w.app().issue_token(who).unwrap();
    assert!(!issued.created);
    assert_eq!(issued.view.token, existing);
    assert_eq!(
        (issued.view.status, issued.view.position, issued.view.estimated_wait_secs),
        (TokenStatus::Active, 0, 0)
    );
}

#[test]
fn an_issued_token_says_admission_is_paused() {
    let mut w = World::new().with_settings(QueueSettings { paused: true, ..settings(100) });
    w.random.expect_token().returning(value);
    w.queue.expect_issue().returning(|u, v, now| {
        Ok(IssueOutcome { token: QueueToken::new_waiting(v, u, 1, now), created: true, cursor: QueueCursor::default() })
    });
    let view = w.app().issue_token(user()).unwrap().view;
    assert!(view.paused);
    assert_eq!(view.poll_after_secs, 20, "paused: the slowest poll pace");
}

#[test]
fn issue_propagates_store_errors() {
    let mut w = World::new();
    w.settings.expect_load().returning(|| Err(down()));
    w.random.expect_token().returning(value);
    assert_eq!(w.app().issue_token(user()), Err(IssueTokenError::Store(down())));

    let mut w = World::new().with_settings(settings(100));
    w.random.expect_token().returning(value);
    w.queue.expect_issue().returning(|_, _, _| Err(down()));
    assert_eq!(w.app().issue_token(user()), Err(IssueTokenError::Store(down())));
}

// ---- 2: read a token ---------------------------------------------------------------------------

#[test]
fn read_token_rejects_malformed_values_without_asking_any_store() {
    let app = World::new().app();
    let upper = value().as_str().to_uppercase();
    for bad in ["", "abc", upper.as_str(), &value().as_str()[1..], &format!("{} ", value().as_str())] {
        assert_eq!(app.read_token(bad), Err(ReadTokenError::Invalid), "{bad:?}");
    }
}

#[test]
fn read_token_unknown_is_invalid() {
    let mut w = World::new().with_settings(settings(100));
    w.queue.expect_find_with_cursor().with(eq(value())).returning(|_| Ok(None));
    assert_eq!(w.app().read_token(value().as_str()), Err(ReadTokenError::Invalid));
}

#[test]
fn read_token_reports_position_and_wait_of_a_waiting_token_under_the_settings_in_force() {
    let who = user();
    let mut w = World::new().with_settings(settings(2));
    let cursor = QueueCursor { admitted_through: 10, last_admission_at: Some(t0() - secs(20)), epoch: 0 };
    w.queue.expect_find_with_cursor().returning(move |_| Ok(Some((waiting(who, 13), cursor))));
    let view = w.app().read_token(value().as_str()).unwrap();
    assert_eq!((view.status, view.position), (TokenStatus::Waiting, 3));
    // Positions 1-2 go in 40 s, position 3 one interval later.
    assert_eq!(view.estimated_wait_secs, 100);
}

#[test]
fn read_token_reads_an_active_token_as_expired_from_its_exact_expiry() {
    let who = user();
    let mut w = World::new().with_settings(settings(100));
    w.queue.expect_find_with_cursor().returning(move |_| Ok(Some((active(who, t0()), QueueCursor::default()))));
    let view = w.app().read_token(value().as_str()).unwrap();
    assert_eq!((view.status, view.position), (TokenStatus::Expired, 0));

    let mut w = World::new().with_settings(settings(100));
    let alive = active(who, t0() + Duration::microseconds(1));
    w.queue.expect_find_with_cursor().returning(move |_| Ok(Some((alive.clone(), QueueCursor::default()))));
    assert_eq!(w.app().read_token(value().as_str()).unwrap().status, TokenStatus::Active);
}

#[test]
fn read_token_propagates_store_errors() {
    let mut w = World::new().with_settings(settings(100));
    w.queue.expect_find_with_cursor().returning(|_| Err(down()));
    assert_eq!(w.app().read_token(value().as_str()), Err(ReadTokenError::Store(down())));

    let mut w = World::new();
    w.settings.expect_load().returning(|| Err(down()));
    w.queue.expect_find_with_cursor().returning(|_| Ok(None));
    assert_eq!(w.app().read_token(value().as_str()), Err(ReadTokenError::Store(down())));
}

#[test]
fn read_token_in_memory_answers_only_when_token_and_settings_are_both_in_memory() {
    let who = user();
    assert_eq!(World::new().app().read_token_in_memory("nope"), Some(Err(ReadTokenError::Invalid)));

    let mut w = World::new();
    w.queue.expect_find_in_memory().returning(|_| None);
    w.settings.expect_load_in_memory().returning(|| Some(settings(100)));
    assert_eq!(w.app().read_token_in_memory(value().as_str()), None, "a cache miss goes to a blocking thread");

    let mut w = World::new();
    w.queue.expect_find_in_memory().returning(move |_| Some((waiting(who, 5), QueueCursor::default())));
    w.settings.expect_load_in_memory().returning(|| None);
    assert_eq!(w.app().read_token_in_memory(value().as_str()), None, "stale settings go to the store");

    let mut w = World::new();
    w.queue.expect_find_in_memory().returning(move |_| Some((waiting(who, 5), QueueCursor::default())));
    w.settings.expect_load_in_memory().returning(|| Some(settings(100)));
    let view = w.app().read_token_in_memory(value().as_str()).unwrap().unwrap();
    assert_eq!((view.status, view.position), (TokenStatus::Waiting, 5));
}

// ---- authorize ---------------------------------------------------------------------------------

#[test]
fn authorize_rejects_malformed_and_unknown_tokens_as_invalid() {
    let mut w = World::new();
    w.queue.expect_find().with(eq(value())).times(1).returning(|_| Ok(None));
    let app = w.app();
    assert_eq!(app.authorize("Bearer x"), Err(AuthorizeError::Invalid));
    assert_eq!(app.authorize(&value().as_str().to_uppercase()), Err(AuthorizeError::Invalid));
    assert_eq!(app.authorize(value().as_str()), Err(AuthorizeError::Invalid));
}

#[test]
fn authorize_admits_an_active_token_until_one_microsecond_before_its_expiry() {
    let who = user();
    let token = active(who, t0() + Duration::microseconds(1));
    let app = World::new().with_token(token.clone()).app();
    let active_user = app.authorize(value().as_str()).unwrap();
    assert_eq!((active_user.user_id(), active_user.token()), (who, &token));

    let app = World::new().with_token(active(who, t0())).app();
    assert_eq!(app.authorize(value().as_str()), Err(AuthorizeError::Expired), "at the exact expiry");
}

#[test]
fn authorize_refuses_waiting_and_expired_tokens_and_reports_store_errors() {
    let who = user();
    let app = World::new().with_token(waiting(who, 3)).app();
    assert_eq!(app.authorize(value().as_str()), Err(AuthorizeError::NotActive));

    let used = QueueToken { status: TokenStatus::Expired, ..active(who, t0() + secs(100)) };
    let app = World::new().with_token(used).app();
    assert_eq!(app.authorize(value().as_str()), Err(AuthorizeError::Expired), "used up by a payment");

    let mut w = World::new();
    w.queue.expect_find().returning(|_| Err(down()));
    assert_eq!(w.app().authorize(value().as_str()), Err(AuthorizeError::Store(down())));
}

// ---- 3: admission and sweeps ---------------------------------------------------------------------

#[test]
fn paused_admission_makes_no_queue_store_call() {
    // The queue mock has no expectation: any call would fail the test.
    let w = World::new().with_settings(QueueSettings { paused: true, ..settings(100) });
    assert_eq!(w.app().admit(), Ok(AdmissionOutcome::Paused));
}

#[test]
fn admission_passes_the_settings_in_force_and_returns_the_stores_outcome() {
    let live = QueueSettings {
        paused: false,
        admission: AdmissionPolicy { batch: 7, interval: secs(5), active_ttl: secs(30), max_active: Some(9) },
    };
    let mut w = World::new().with_settings(live);
    w.queue.expect_admit().with(eq(live.admission)).times(1).returning(|_| Ok(AdmissionOutcome::Admitted(7)));
    assert_eq!(w.app().admit(), Ok(AdmissionOutcome::Admitted(7)));

    let mut w = World::new().with_settings(live);
    let wait = Duration::milliseconds(1_500);
    w.queue.expect_admit().returning(move |_| Ok(AdmissionOutcome::NotDue { wait }));
    assert_eq!(w.app().admit(), Ok(AdmissionOutcome::NotDue { wait }));

    let mut w = World::new().with_settings(live);
    w.queue.expect_admit().returning(|_| Err(down()));
    assert_eq!(w.app().admit(), Err(down()));

    let mut w = World::new();
    w.settings.expect_load().returning(|| Err(down()));
    assert_eq!(w.app().admit(), Err(down()), "no admission without the settings");
}

#[test]
fn a_sweep_runs_batches_until_one_comes_back_short() {
    let calls = Arc::new(AtomicUsize::new(0));
    let mut w = World::new();
    w.policy = Policy { sweep_batch: 10, sweep_batches_per_tick: 5, ..Policy::default() };
    let next = batches(&[10, 10, 3, 10], &calls);
    w.queue.expect_expire_tokens().with(eq(10)).returning(move |_| next());
    assert_eq!(w.app().expire_tokens(), Ok(23));
    assert_eq!(calls.load(Ordering::SeqCst), 3);
}

#[test]
fn a_sweep_stops_after_the_batches_per_tick() {
    let calls = Arc::new(AtomicUsize::new(0));
    let mut w = World::new();
    w.policy = Policy { sweep_batch: 10, sweep_batches_per_tick: 2, ..Policy::default() };
    let next = batches(&[10, 10, 10], &calls);
    w.reservations.expect_release_lapsed().with(eq(t0()), eq(10)).returning(move |_, _| next());
    assert_eq!(w.app().release_holds(), Ok(20));
    assert_eq!(calls.load(Ordering::SeqCst), 2, "the rest waits for the next tick");
}

#[test]
fn an_empty_first_batch_ends_the_sweep_and_zero_settings_mean_one() {
    let calls = Arc::new(AtomicUsize::new(0));
    let mut w = World::new();
    let next = batches(&[], &calls);
    w.idempotency.expect_purge_expired().with(eq(t0()), eq(1_000)).returning(move |_, _| next());
    assert_eq!(w.app().purge_idempotency_keys(), Ok(0));
    assert_eq!(calls.load(Ordering::SeqCst), 1);

    let calls = Arc::new(AtomicUsize::new(0));
    let mut w = World::new();
    w.policy = Policy { sweep_batch: 0, sweep_batches_per_tick: 0, ..Policy::default() };
    let next = batches(&[1, 1], &calls);
    w.queue.expect_expire_tokens().with(eq(1)).returning(move |_| next());
    assert_eq!(w.app().expire_tokens(), Ok(1));
    assert_eq!(calls.load(Ordering::SeqCst), 1);
}

#[test]
fn a_failing_batch_fails_the_sweep() {
    let calls = Arc::new(AtomicUsize::new(0));
    let mut w = World::new();
    w.policy = Policy { sweep_batch: 2, ..Policy::default() };
    let counted = calls.clone();
    w.queue.expect_expire_tokens().returning(move |_| {
        if counted.fetch_add(1, Ordering::SeqCst) == 0 {
            Ok(2)
        } else {
            Err(down())
        }
    });
    assert_eq!(w.app().expire_tokens(), Err(down()));
}

#[test]
fn a_tick_runs_every_part_and_reports_what_each_did() {
    let mut w = World::new().with_settings(settings(100));
    w.queue.expect_admit().returning(|_| Ok(AdmissionOutcome::Admitted(3)));
    w.queue.expect_expire_tokens().returning(|_| Ok(4));
    w.reservations.expect_release_lapsed().returning(|_, _| Ok(5));
    w.idempotency.expect_purge_expired().returning(|_, _| Ok(6));
    let report = w.app().tick().unwrap();
    assert_eq!(
        report,
        TickReport { admission: AdmissionOutcome::Admitted(3), tokens_expired: 4, holds_released: 5, keys_purged: 6 }
    );
}

#[test]
fn a_tick_runs_every_part_even_after_a_failure_and_returns_the_first_error() {
    let mut w = World::new();
    w.settings.expect_load().returning(|| Err(down()));
    w.queue.expect_expire_tokens().times(1).returning(|_| Ok(0));
    w.reservations.expect_release_lapsed().times(1).returning(|_, _| Err(StoreError::Timeout("lock".into())));
    w.idempotency.expect_purge_expired().times(1).returning(|_, _| Ok(0));
    assert_eq!(w.app().tick(), Err(down()));
}

// ---- 4: catalogue ------------------------------------------------------------------------------

fn seat(schedule: ScheduleId, number: u32) -> Seat {
    Seat { id: SeatId::from_uuid(id()), schedule_id: schedule, number, price: Won::new(1_000) }
}

#[test]
fn concerts_are_listed_as_the_store_has_them() {
    let who = user();
    let concert = Concert { id: ConcertId::from_uuid(id()), title: "T".into(), artist: "A".into(), venue: "V".into() };
    let listed = vec![concert];
    let mut w = World::new().with_token(active(who, t0() + secs(1)));
    let answer = listed.clone();
    w.catalogue.expect_concerts().returning(move || Ok(answer.clone()));
    let app = w.app();
    assert_eq!(app.concerts(&authorized(&app)), Ok(listed));

    let mut w = World::new().with_token(active(who, t0() + secs(1)));
    w.catalogue.expect_concerts().returning(|| Err(down()));
    let app = w.app();
    assert_eq!(app.concerts(&authorized(&app)), Err(ListConcertsError::Store(down())));
}

#[test]
fn schedules_of_an_unknown_concert_are_not_found_and_the_store_is_asked_at_now() {
    let who = user();
    let concert = ConcertId::from_uuid(id());
    let summary = ScheduleSummary {
        id: ScheduleId::from_uuid(id()),
        concert_id: concert,
        starts_at: t0() + secs(1),
        total_seats: 50,
        available_seats: 49,
    };
    let mut w = World::new().with_token(active(who, t0() + secs(1)));
    let answer = vec![summary.clone()];
    w.catalogue.expect_schedules().with(eq(concert), eq(t0())).returning(move |_, _| Ok(Some(answer.clone())));
    let app = w.app();
    assert_eq!(app.schedules(&authorized(&app), concert), Ok(vec![summary]));

    let mut w = World::new().with_token(active(who, t0() + secs(1)));
    w.catalogue.expect_schedules().returning(|_, _| Ok(None));
    let app = w.app();
    assert_eq!(app.schedules(&authorized(&app), concert), Err(ListSchedulesError::NotFound));

    let mut w = World::new().with_token(active(who, t0() + secs(1)));
    w.catalogue.expect_schedules().returning(|_, _| Err(down()));
    let app = w.app();
    assert_eq!(app.schedules(&authorized(&app), concert), Err(ListSchedulesError::Store(down())));
}

#[test]
fn a_seat_map_reads_each_claim_at_now() {
    let who = user();
    let schedule = ScheduleId::from_uuid(id());
    let claim =
        |status, held_until| Some(SeatClaim { reservation_id: ReservationId::from_uuid(id()), status, held_until });
    let records = vec![
        SeatRecord { seat: seat(schedule, 1), claim: None },
        SeatRecord { seat: seat(schedule, 2), claim: claim(ReservationStatus::Held, t0() + Duration::microseconds(1)) },
        SeatRecord { seat: seat(schedule, 3), claim: claim(ReservationStatus::Held, t0()) },
        SeatRecord { seat: seat(schedule, 4), claim: claim(ReservationStatus::Paid, t0() - secs(900)) },
    ];
    let mut w = World::new().with_token(active(who, t0() + secs(1)));
    let answer = records.clone();
    w.catalogue.expect_seats().with(eq(schedule)).returning(move |_| Ok(Some(answer.clone())));
    let app = w.app();
    let map = app.seats(&authorized(&app), schedule).unwrap();
    let statuses: Vec<(u32, SeatStatus)> = map.iter().map(|s| (s.seat.number, s.status)).collect();
    use SeatStatus::{Available, Held, Sold};
    assert_eq!(statuses, vec![(1, Available), (2, Held), (3, Available), (4, Sold)]);

    let mut w = World::new().with_token(active(who, t0() + secs(1)));
    w.catalogue.expect_seats().returning(|_| Ok(None));
    let app = w.app();
    assert_eq!(app.seats(&authorized(&app), schedule), Err(ListSeatsError::NotFound));

    let mut w = World::new().with_token(active(who, t0() + secs(1)));
    w.catalogue.expect_seats().returning(|_| Err(down()));
    let app = w.app();
    assert_eq!(app.seats(&authorized(&app), schedule), Err(ListSeatsError::Store(down())));
}

// ---- 5: reservations ---------------------------------------------------------------------------

#[test]
fn reserve_asks_for_a_hold_for_the_token_user_until_now_plus_the_hold_time_under_the_limit() {
    let who = user();
    let (schedule, seat_id) = (ScheduleId::from_uuid(id()), SeatId::from_uuid(id()));
    let reservation_id = uuid::Uuid::from_u128(42);
    let mut w = World::new().with_token(active(who, t0() + secs(1)));
    w.policy = Policy { hold: secs(120), max_holds_per_user: 3, ..Policy::default() };
    let mut random = MockRandomness::new();
    random.expect_uuid().returning(move || reservation_id);
    w.random = random;
    let expected = HoldRequest {
        reservation_id: ReservationId::from_uuid(reservation_id),
        user_id: who,
        schedule_id: schedule,
        seat_id,
        now: t0(),
        held_until: t0() + secs(120),
        max_live_holds: 3,
    };
    let held = Reservation {
        id: expected.reservation_id,
        user_id: who,
        schedule_id: schedule,
        seat_id,
        seat_number: 1,
        price: Won::new(9),
        status: ReservationStatus::Held,
        created_at: t0(),
        held_until: t0() + secs(120),
        paid_at: None,
    };
    let answer = held.clone();
    w.reservations.expect_hold().with(eq(expected)).times(1).returning(move |_| Ok(HoldOutcome::Held(answer.clone())));
    let app = w.app();
    assert_eq!(app.reserve(&authorized(&app), schedule, seat_id), Ok(held));
}

#[test]
fn each_refused_hold_has_its_error() {
    let who = user();
    let (schedule, seat_id) = (ScheduleId::from_uuid(id()), SeatId::from_uuid(id()));
    let cases: [(Result<HoldOutcome, StoreError>, ReserveError); 4] = [
        (Ok(HoldOutcome::SeatTaken), ReserveError::SeatUnavailable),
        (Ok(HoldOutcome::NoSuchSeat), ReserveError::NotFound),
        (Ok(HoldOutcome::HoldLimit), ReserveError::HoldLimit { max: 4 }),
        (Err(down()), ReserveError::Store(down())),
    ];
    for (answer, expected) in cases {
        let mut w = World::new().with_token(active(who, t0() + secs(1)));
        w.reservations.expect_hold().returning(move |_| answer.clone());
        let app = w.app();
        assert_eq!(app.reserve(&authorized(&app), schedule, seat_id), Err(expected));
    }
}

#[test]
fn a_reservation_is_read_at_now_and_only_by_its_user() {
    let who = user();
    let mine = reservation(who, ReservationStatus::Held, t0());
    let theirs = reservation(user(), ReservationStatus::Held, t0() + secs(100));
    let (mine_id, theirs_id) = (mine.id, theirs.id);
    let mut w = World::new().with_token(active(who, t0() + secs(1)));
    w.reservations.expect_find().with(eq(mine_id)).returning(move |_| Ok(Some(mine.clone())));
    w.reservations.expect_find().with(eq(theirs_id)).returning(move |_| Ok(Some(theirs.clone())));
    let unknown = ReservationId::from_uuid(id());
    w.reservations.expect_find().with(eq(unknown)).returning(|_| Ok(None));
    let app = w.app();
    let me = authorized(&app);
    assert_eq!(app.reservation(&me, mine_id).unwrap().status, ReservationStatus::Expired, "lapsed at now");
    assert_eq!(app.reservation(&me, theirs_id), Err(GetReservationError::NotFound));
    assert_eq!(app.reservation(&me, unknown), Err(GetReservationError::NotFound));

    let mut w = World::new().with_token(active(who, t0() + secs(1)));
    w.reservations.expect_find().returning(|_| Err(down()));
    let app = w.app();
    assert_eq!(app.reservation(&authorized(&app), unknown), Err(GetReservationError::Store(down())));
}

// ---- 7: payment --------------------------------------------------------------------------------

/// Facts of a held reservation of `who` priced 150,000, with `balance`.
fn facts(who: UserId, balance: i64) -> (PaymentFacts, ReservationId) {
    let r = reservation(who, ReservationStatus::Held, t0() + secs(100));
    let id = r.id;
    (PaymentFacts { reservation: Some(r), balance: Won::new(balance), token_paid: false, token: None }, id)
}

#[test]
fn pay_refuses_malformed_unknown_waiting_and_expired_tokens_before_the_store() {
    let who = user();
    let r = ReservationId::from_uuid(id());
    // No payment fake facts: a call to the payment store would fail the test.
    let mut w = World::new();
    w.queue.expect_find().returning(|_| Ok(None));
    let app = w.app();
    assert_eq!(app.pay("nope", r, None), Err(PayError::TokenInvalid));
    assert_eq!(app.pay(value().as_str(), r, None), Err(PayError::TokenInvalid));

    let app = World::new().with_token(waiting(who, 2)).app();
    assert_eq!(app.pay(value().as_str(), r, None), Err(PayError::TokenNotActive));
    let app = World::new().with_token(active(who, t0())).app();
    assert_eq!(app.pay(value().as_str(), r, None), Err(PayError::TokenExpired), "at the exact expiry");
    let used = QueueToken { status: TokenStatus::Expired, ..active(who, t0() + secs(9)) };
    let app = World::new().with_token(used).app();
    assert_eq!(app.pay(value().as_str(), r, None), Err(PayError::TokenExpired));

    let mut w = World::new();
    w.queue.expect_find().returning(|_| Err(down()));
    assert_eq!(w.app().pay(value().as_str(), r, None), Err(PayError::Store(down())));
}

#[test]
fn a_payment_settles_the_facts_the_store_read_and_uses_up_the_token_that_paid() {
    let who = user();
    let (facts, r) = facts(who, 200_000);
    let mut w = World::new().with_token(active(who, t0() + secs(1)));
    w.queue.expect_use_up().with(eq(value()), eq(t0())).times(1).returning(|_, _| Ok(()));
    let w = w.payments(FakePayments { facts: Some(facts), ..FakePayments::default() });
    let payments = w.payments.clone();
    let outcome = w.app().pay(value().as_str(), r, None).unwrap();
    let Outcome::Fresh { value: payment, recorded: None } = outcome else { panic!("a fresh, unkeyed payment") };
    assert_eq!((payment.reservation_id, payment.user_id, payment.amount), (r, who, Won::new(150_000)));
    assert_eq!((payment.balance_after, payment.paid_at), (Won::new(50_000), t0()));
    let seen = lock(&payments.seen).clone();
    assert_eq!(seen, vec![(PaymentRequest { reservation: r, user: who, token: value() }, None)]);
    let decisions = lock(&payments.decisions).clone();
    let settlement = decisions[0].as_ref().unwrap();
    assert_eq!((&settlement.payment, &settlement.token), (&payment, &value()));
    assert_eq!((settlement.entry.kind, settlement.entry.amount), (LedgerKind::Payment, Won::new(-150_000)));
}

#[test]
fn a_payment_store_that_holds_the_token_uses_it_up_itself() {
    let who = user();
    let (mut f, r) = facts(who, 200_000);
    f.token = Some(active(who, t0() + secs(1)));
    // No `use_up` expectation: the payment's own transaction used the token up.
    let w = World::new()
        .with_token(active(who, t0() + secs(1)))
        .payments(FakePayments { facts: Some(f), ..FakePayments::default() });
    let payments = w.payments.clone();
    assert!(matches!(w.app().pay(value().as_str(), r, None), Ok(Outcome::Fresh { .. })));
    assert!(lock(&payments.decisions)[0].as_ref().is_ok_and(|s| s.uses_up_token));
}

/// A change to the facts a store read.
type Change = dyn Fn(&mut PaymentFacts);

#[test]
fn the_decisions_refusals_are_returned_and_nothing_is_used_up() {
    let who = user();
    let refusals: Vec<(Box<Change>, PayError)> = vec![
        (
            Box::new(|f| f.balance = Won::new(149_999)),
            PayError::InsufficientBalance { balance: Won::new(149_999), price: Won::new(150_000) },
        ),
        (Box::new(|f| f.token_paid = true), PayError::TokenExpired),
        (Box::new(|f| f.reservation = None), PayError::NotFound),
        (
            Box::new(|f| f.reservation.iter_mut().for_each(|r| r.status = ReservationStatus::Paid)),
            PayError::AlreadyPaid,
        ),
        (Box::new(|f| f.reservation.iter_mut().for_each(|r| r.held_until = t0())), PayError::HoldExpired),
        (Box::new(|f| f.token = Some(waiting(UserId::from_uuid(id()), 3))), PayError::TokenNotActive),
    ];
    for (change, expected) in refusals {
        let (mut f, r) = facts(who, 1_000_000);
        change(&mut f);
        // No `use_up` expectation: using the token up would fail the test.
        let w = World::new()
            .with_token(active(who, t0() + secs(1)))
            .payments(FakePayments { facts: Some(f), ..FakePayments::default() });
        assert_eq!(w.app().pay(value().as_str(), r, None), Err(expected));
    }
}

#[test]
fn the_token_and_the_hold_are_judged_when_the_store_decides_not_when_authorised() {
    let who = user();
    let clock = ManualClock::new(t0());
    let (f, r) = facts(who, 1_000_000);
    let mut w = World::new().with_token(active(who, t0() + secs(2))).payments(FakePayments {
        facts: Some(f),
        lock_wait: Some((clock.clone(), secs(2))),
        ..FakePayments::default()
    });
    w.clock = Some(Arc::new(clock));
    assert_eq!(w.app().pay(value().as_str(), r, None), Err(PayError::TokenExpired), "the TTL ran out meanwhile");
}

#[test]
fn a_failed_use_up_after_the_commit_still_returns_the_payment() {
    let who = user();
    let (f, r) = facts(who, 200_000);
    let mut w = World::new().with_token(active(who, t0() + secs(1)));
    w.queue.expect_use_up().times(1).returning(|_, _| Err(down()));
    let w = w.payments(FakePayments { facts: Some(f), ..FakePayments::default() });
    let outcome = w.app().pay(value().as_str(), r, None).unwrap();
    assert!(matches!(outcome, Outcome::Fresh { value, .. } if value.reservation_id == r));
}

#[test]
fn a_payment_store_failure_is_a_store_error() {
    let who = user();
    let w = World::new()
        .with_token(active(who, t0() + secs(1)))
        .payments(FakePayments { failure: Some(down()), ..FakePayments::default() });
    assert_eq!(w.app().pay(value().as_str(), ReservationId::from_uuid(id()), None), Err(PayError::Store(down())));
}

#[test]
fn a_keyed_payment_replays_before_the_token_check() {
    let who = user();
    let r = ReservationId::from_uuid(id());
    let recorded = record(Fingerprint::payment(r), "paid before");
    // The token is used up (and WAITING tokens of the user would be refused): the replay is
    // answered anyway, and the payment store is never asked.
    let used = QueueToken { status: TokenStatus::Expired, ..active(who, t0() + secs(9)) };
    let mut w = World::new().with_token(used.clone());
    let answer = recorded.clone();
    w.idempotency
        .expect_find()
        .with(eq(who), eq(key("k")), eq(t0()))
        .returning(move |_, _, _| Ok(Some(answer.clone())));
    assert_eq!(w.app().pay(value().as_str(), r, keyed("k")), Ok(Outcome::Replayed(recorded.response.clone())));

    let mut w = World::new().with_token(waiting(who, 4));
    let answer = recorded.clone();
    w.idempotency.expect_find().returning(move |_, _, _| Ok(Some(answer.clone())));
    assert_eq!(w.app().pay(value().as_str(), r, keyed("k")), Ok(Outcome::Replayed(recorded.response)));

    // The key was used for another reservation, or for a charge: refused, before the token too.
    for fingerprint in [Fingerprint::payment(ReservationId::from_uuid(id())), Fingerprint::charge(who, Won::new(5))] {
        let mut w = World::new().with_token(used.clone());
        w.idempotency.expect_find().returning(move |_, _, _| Ok(Some(record(fingerprint.clone(), "other"))));
        assert_eq!(w.app().pay(value().as_str(), r, keyed("k")), Err(PayError::Key(crate::error::KeyConflict::Reused)));
    }

    let mut w = World::new().with_token(used);
    w.idempotency.expect_find().returning(|_, _, _| Err(down()));
    assert_eq!(w.app().pay(value().as_str(), r, keyed("k")), Err(PayError::Store(down())));
}

#[test]
fn a_keyed_payment_is_guarded_and_recorded_with_its_rendered_response() {
    let who = user();
    let (f, r) = facts(who, 200_000);
    let mut w = World::new().with_token(active(who, t0() + secs(1)));
    w.policy = Policy { idempotency_ttl: secs(3_600), ..Policy::default() };
    w.idempotency.expect_find().returning(|_, _, _| Ok(None));
    w.queue.expect_use_up().returning(|_, _| Ok(()));
    let w = w.payments(FakePayments { facts: Some(f), ..FakePayments::default() });
    let payments = w.payments.clone();
    let Outcome::Fresh { value: payment, recorded } = w.app().pay(value().as_str(), r, keyed("k")).unwrap() else {
        panic!("fresh");
    };
    assert_eq!(recorded, Some(render(&Effect::Paid(payment))));
    let guard = lock(&payments.seen)[0].1.clone().unwrap();
    assert_eq!(
        guard,
        GuardSeen {
            user: who,
            key: key("k"),
            fingerprint: Fingerprint::payment(r),
            now: t0(),
            expires_at: t0() + secs(3_600)
        }
    );
}

#[test]
fn a_keyed_payment_claimed_by_the_store_replays_refuses_or_is_in_flight() {
    let who = user();
    let r = ReservationId::from_uuid(id());
    let same = record(Fingerprint::payment(r), "recorded meanwhile");
    let cases = [
        (Claimed::Recorded(same.clone()), Ok(Outcome::Replayed(same.response.clone()))),
        (
            Claimed::Recorded(record(Fingerprint::charge(who, Won::new(1)), "x")),
            Err(PayError::Key(crate::error::KeyConflict::Reused)),
        ),
        (Claimed::InFlight, Err(PayError::Key(crate::error::KeyConflict::InFlight))),
    ];
    for (claimed, expected) in cases {
        let mut w = World::new().with_token(active(who, t0() + secs(1)));
        w.idempotency.expect_find().returning(|_, _, _| Ok(None));
        let w = w.payments(FakePayments { claimed: Some(claimed), ..FakePayments::default() });
        assert_eq!(w.app().pay(value().as_str(), r, keyed("k")), expected);
    }
}

// ---- 8-9: balance ------------------------------------------------------------------------------

fn entry(user: UserId, amount: i64) -> LedgerEntry {
    LedgerEntry {
        id: LedgerEntryId::from_uuid(id()),
        user_id: user,
        kind: LedgerKind::Charge,
        amount: Won::new(amount),
        balance_after: Won::new(amount),
        at: t0(),
        payment_id: None,
        reservation_id: None,
    }
}

#[test]
fn balance_is_the_stores() {
    let w = World::new().accounts(FakeAccounts { balance: Ok(Won::new(7)), ..FakeAccounts::default() });
    assert_eq!(w.app().balance(user()), Ok(Won::new(7)));
    let w = World::new().accounts(FakeAccounts { balance: Err(down()), ..FakeAccounts::default() });
    assert_eq!(w.app().balance(user()), Err(BalanceError::Store(down())));
}

#[test]
fn history_asks_for_one_more_than_the_page_to_know_whether_another_follows() {
    let who = user();
    let entries: Vec<LedgerEntry> = (1..=4).map(|i| entry(who, i)).collect();
    let before = Some(LedgerEntryId::from_uuid(id()));
    let w = World::new().accounts(FakeAccounts { ledger: Ok(Some(entries.clone())), ..FakeAccounts::default() });
    let accounts = w.accounts.clone();
    let page = w.app().balance_history(who, before, Some(3)).unwrap();
    assert_eq!(page.entries, entries[..3].to_vec());
    assert_eq!(page.next_before, Some(entries[2].id));
    assert_eq!(lock(&accounts.queries).clone(), vec![(who, LedgerQuery { before, limit: 4 })]);

    let w = World::new().accounts(FakeAccounts { ledger: Ok(Some(entries[..3].to_vec())), ..FakeAccounts::default() });
    let page = w.app().balance_history(who, None, Some(3)).unwrap();
    assert_eq!((page.entries.len(), page.next_before), (3, None), "exactly a page: no next one");

    let w = World::new().accounts(FakeAccounts { ledger: Ok(Some(Vec::new())), ..FakeAccounts::default() });
    let accounts = w.accounts.clone();
    let page = w.app().balance_history(who, None, None).unwrap();
    assert_eq!((page.entries.len(), page.next_before), (0, None));
    assert_eq!(lock(&accounts.queries)[0].1, LedgerQuery { before: None, limit: 51 }, "50 by default");
}

#[test]
fn history_refuses_a_bad_limit_without_asking_and_an_unknown_before() {
    let w = World::new();
    let accounts = w.accounts.clone();
    let app = w.app();
    for limit in [0, 101] {
        assert_eq!(app.balance_history(user(), None, Some(limit)), Err(HistoryError::InvalidLimit));
    }
    assert!(lock(&accounts.queries).is_empty());
    let app = World::new().accounts(FakeAccounts { ledger: Ok(Some(Vec::new())), ..FakeAccounts::default() }).app();
    assert!(app.balance_history(user(), None, Some(1)).is_ok());
    assert!(app.balance_history(user(), None, Some(100)).is_ok());

    let w = World::new().accounts(FakeAccounts { ledger: Ok(None), ..FakeAccounts::default() });
    let before = Some(LedgerEntryId::from_uuid(id()));
    assert_eq!(w.app().balance_history(user(), before, None), Err(HistoryError::UnknownBefore));
    let w = World::new().accounts(FakeAccounts { ledger: Err(down()), ..FakeAccounts::default() });
    assert_eq!(w.app().balance_history(user(), None, None), Err(HistoryError::Store(down())));
}

#[test]
fn a_charge_outside_one_to_a_billion_is_refused_without_asking() {
    let w = World::new();
    let accounts = w.accounts.clone();
    let app = w.app();
    for amount in [0, -1, 1_000_000_001, i64::MIN] {
        assert_eq!(app.charge(user(), amount, None), Err(ChargeError::InvalidAmount), "{amount}");
    }
    assert!(lock(&accounts.credits).is_empty());
}

#[test]
fn a_charge_credits_under_the_contracts_limit_with_a_new_entry_at_now() {
    let who = user();
    for amount in [1, 1_000_000_000] {
        let w = World::new().accounts(FakeAccounts {
            credit: Ok(Claimed::Done(CreditOutcome::Credited(Won::new(amount + 5)))),
            ..FakeAccounts::default()
        });
        let accounts = w.accounts.clone();
        let outcome = w.app().charge(who, amount, None);
        assert_eq!(outcome, Ok(Outcome::Fresh { value: Won::new(amount + 5), recorded: None }));
        let (req, guard) = lock(&accounts.credits)[0].clone();
        assert_eq!((req.user, req.amount, req.limit, req.at), (who, Won::new(amount), BALANCE_LIMIT, t0()));
        assert_eq!(guard, None);
    }
}

#[test]
fn a_charge_over_the_limit_reports_the_unchanged_balance() {
    let w = World::new().accounts(FakeAccounts {
        credit: Ok(Claimed::Done(CreditOutcome::LimitExceeded(Won::new(9_999_999_999)))),
        ..FakeAccounts::default()
    });
    assert_eq!(
        w.app().charge(user(), 2, None),
        Err(ChargeError::BalanceLimit { balance: Won::new(9_999_999_999), amount: Won::new(2) })
    );
    let w = World::new().accounts(FakeAccounts { credit: Err(down()), ..FakeAccounts::default() });
    assert_eq!(w.app().charge(user(), 2, None), Err(ChargeError::Store(down())));
}

#[test]
fn a_keyed_charge_is_guarded_recorded_and_replayed_by_the_store() {
    let who = user();
    let mut w = World::new().accounts(FakeAccounts {
        credit: Ok(Claimed::Done(CreditOutcome::Credited(Won::new(300)))),
        ..FakeAccounts::default()
    });
    w.policy = Policy { idempotency_ttl: secs(60), ..Policy::default() };
    let accounts = w.accounts.clone();
    let outcome = w.app().charge(who, 300, keyed("c"));
    let recorded = render(&Effect::Charged { user: who, balance: Won::new(300) });
    assert_eq!(outcome, Ok(Outcome::Fresh { value: Won::new(300), recorded: Some(recorded) }));
    let guard = lock(&accounts.credits)[0].1.clone().unwrap();
    let fingerprint = Fingerprint::charge(who, Won::new(300));
    assert_eq!(
        guard,
        GuardSeen {
            user: who,
            key: key("c"),
            fingerprint: fingerprint.clone(),
            now: t0(),
            expires_at: t0() + secs(60)
        }
    );

    let same = record(fingerprint, "charged before");
    let cases = [
        (Claimed::Recorded(same.clone()), Ok(Outcome::Replayed(same.response.clone()))),
        (
            Claimed::Recorded(record(Fingerprint::charge(who, Won::new(301)), "x")),
            Err(ChargeError::Key(crate::error::KeyConflict::Reused)),
        ),
        (Claimed::InFlight, Err(ChargeError::Key(crate::error::KeyConflict::InFlight))),
    ];
    for (claimed, expected) in cases {
        let w = World::new().accounts(FakeAccounts { credit: Ok(claimed), ..FakeAccounts::default() });
        assert_eq!(w.app().charge(who, 300, keyed("c")), expected);
    }
}

// ---- operator ----------------------------------------------------------------------------------

fn stats() -> QueueStats {
    QueueStats {
        waiting: 3,
        active: 2,
        issued_through: 9,
        cursor: QueueCursor { admitted_through: 6, last_admission_at: Some(t0() - secs(10)), epoch: 0 },
        now: t0(),
    }
}

#[test]
fn the_queue_state_combines_the_stores_counts_with_the_settings_in_force() {
    let mut w = World::new().with_settings(settings(5));
    w.queue.expect_stats().returning(|| Ok(stats()));
    let state = w.app().queue_state().unwrap();
    assert_eq!((state.stats, state.settings), (stats(), settings(5)));
    assert_eq!(state.next_admission_at, Some(t0() + secs(50)));

    let mut w = World::new().with_settings(settings(5));
    w.queue.expect_stats().returning(|| Err(down()));
    assert_eq!(w.app().queue_state(), Err(down()));
}

#[test]
fn an_update_returns_the_state_under_the_new_settings() {
    let patch = SettingsPatch::new(Some(true), None, None, None, None).unwrap();
    let paused = QueueSettings { paused: true, ..settings(5) };
    let mut w = World::new();
    w.settings.expect_update().with(eq(patch)).times(1).returning(move |_| Ok((settings(5), paused)));
    w.queue.expect_stats().returning(|| Ok(stats()));
    let state = w.app().update_queue("ops", &patch).unwrap();
    assert_eq!((state.settings, state.next_admission_at), (paused, None));

    let mut w = World::new();
    w.settings.expect_update().returning(|_| Err(down()));
    assert_eq!(w.app().update_queue("ops", &patch), Err(UpdateQueueError::Store(down())));
}

fn draft(starts_at: OffsetDateTime) -> ConcertDraft {
    ConcertDraft {
        title: "T".into(),
        artist: String::new(),
        venue: String::new(),
        schedules: vec![ScheduleDraft { starts_at, seats: vec![SeatDraft { number: 1, price: 10 }] }],
    }
}

#[test]
fn create_concert_stores_exactly_what_it_validated_at_now() {
    let mut w = World::new();
    let stored = Arc::new(Mutex::new(None));
    let keep = stored.clone();
    w.catalogue.expect_create_concert().times(1).returning(move |c| {
        *lock(&keep) = Some(c.clone());
        Ok(true)
    });
    let created = w.app().create_concert("ops", &draft(t0() + Duration::microseconds(1))).unwrap();
    assert_eq!(lock(&stored).clone(), Some(created.clone()));
    assert_eq!(created.schedules[0].concert_id, created.concert.id);

    // Starting at now is not in the future: refused before the store.
    let app = World::new().app();
    assert!(matches!(app.create_concert("ops", &draft(t0())), Err(CreateConcertError::Invalid(_))));

    let mut w = World::new();
    w.catalogue.expect_create_concert().returning(|_| Ok(false));
    assert!(matches!(w.app().create_concert("ops", &draft(t0() + secs(1))), Err(CreateConcertError::Store(_))));
    let mut w = World::new();
    w.catalogue.expect_create_concert().returning(|_| Err(down()));
    assert_eq!(w.app().create_concert("ops", &draft(t0() + secs(1))), Err(CreateConcertError::Store(down())));
}

#[test]
fn add_schedule_says_why_a_schedule_was_not_added() {
    let concert = ConcertId::from_uuid(id());
    let schedule = ScheduleDraft { starts_at: t0() + secs(1), seats: vec![SeatDraft { number: 1, price: 10 }] };
    let mut w = World::new();
    w.catalogue.expect_add_schedule().withf(move |s| s.concert_id == concert).returning(|_| Ok(AddSchedule::Added));
    let added = w.app().add_schedule("ops", concert, &schedule).unwrap();
    assert_eq!((added.concert_id, added.starts_at, added.seats.len()), (concert, t0() + secs(1), 1));

    let cases = [
        (Ok(AddSchedule::NoSuchConcert), Some(AddScheduleError::NotFound)),
        (Ok(AddSchedule::AlreadyExists), None),
        (Err(down()), Some(AddScheduleError::Store(down()))),
    ];
    for (answer, expected) in cases {
        let mut w = World::new();
        w.catalogue.expect_add_schedule().returning(move |_| answer.clone());
        let result = w.app().add_schedule("ops", concert, &schedule);
        match expected {
            Some(e) => assert_eq!(result, Err(e)),
            None => assert!(matches!(result, Err(AddScheduleError::Store(StoreError::Internal(_))))),
        }
    }

    let app = World::new().app();
    let past = ScheduleDraft { starts_at: t0(), ..schedule };
    assert!(matches!(app.add_schedule("ops", concert, &past), Err(AddScheduleError::Invalid(_))));
}

#[test]
fn sales_are_read_at_now_and_an_unknown_concert_is_not_found() {
    let concert = ConcertId::from_uuid(id());
    let row = ScheduleSales {
        schedule_id: ScheduleId::from_uuid(id()),
        starts_at: t0(),
        total_seats: 2,
        sold: 1,
        held: 0,
        available: 1,
        revenue: Won::new(10),
    };
    let mut w = World::new();
    w.catalogue.expect_sales().with(eq(concert), eq(t0())).returning(move |_, _| Ok(Some(vec![row])));
    assert_eq!(w.app().sales(concert), Ok(vec![row]));
    let mut w = World::new();
    w.catalogue.expect_sales().returning(|_, _| Ok(None));
    assert_eq!(w.app().sales(concert), Err(SalesError::NotFound));
    let mut w = World::new();
    w.catalogue.expect_sales().returning(|_, _| Err(down()));
    assert_eq!(w.app().sales(concert), Err(SalesError::Store(down())));
}

#[test]
fn the_static_policy_defaults_are_the_contracts() {
    let p = Policy::default();
    assert_eq!((p.hold, p.max_holds_per_user, p.idempotency_ttl), (secs(300), 4, secs(86_400)));
    assert_eq!((p.sweep_batch, p.sweep_batches_per_tick), (1_000, 10));
}
