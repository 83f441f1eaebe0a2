//! Unit tests of every use-case rule in [`crate::service`], against mockall mocks of the
//! ports: each error variant, each boundary instant, and the exact calls a use case makes (or
//! must not make).

use std::sync::{Arc, Mutex, PoisonError};

use mockall::predicate::eq;
use mockall::Sequence;
use time::{Duration, OffsetDateTime};

use crate::account::{CreditOutcome, LedgerEntry, LedgerKind};
use crate::catalogue::{Concert, ScheduleSummary, Seat, SeatClaim, SeatRecord, SeatStatus};
use crate::clock::MockClock;
use crate::error::{
    AuthorizeError, BalanceError, ChargeError, GetReservationError, IssueTokenError, ListConcertsError,
    ListSchedulesError, ListSeatsError, PayError, ReadTokenError, ReserveError,
};
use crate::ids::{ConcertId, LedgerEntryId, PaymentId, ReservationId, ScheduleId, SeatId, UserId};
use crate::money::{Won, BALANCE_LIMIT};
use crate::payment::Payment;
use crate::ports::{
    DebitOutcome, IssueOutcome, MockAccountStore, MockCatalogueStore, MockPaymentTx, MockQueueStore,
    MockReservationStore, PaymentTx, PaymentUnitOfWork, PaymentWork, StoreError,
};
use crate::queue::{AdmissionOutcome, MockTokenGenerator, QueueCursor, QueueToken, TokenStatus, TokenValue};
use crate::reservation::{HoldOutcome, Reservation, ReservationStatus};
use crate::service::{ActiveUser, Policy, Ports, TickReport, Ticketing};

// ---- fixtures ----------------------------------------------------------------------------------

fn t0() -> OffsetDateTime {
    OffsetDateTime::from_unix_timestamp(1_893_456_000).unwrap()
}

fn secs(n: i64) -> Duration {
    Duration::seconds(n)
}

fn value() -> TokenValue {
    TokenValue::from_bytes([0x5a; 32])
}

fn down() -> StoreError {
    StoreError::Unavailable("connection refused".into())
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
        id: ReservationId::random(),
        user_id: user,
        schedule_id: ScheduleId::random(),
        seat_id: SeatId::random(),
        seat_number: 7,
        price: Won::new(150_000),
        status,
        created_at: held_until - secs(300),
        held_until,
        paid_at: None,
    }
}

/// Runs the payment work against a [`MockPaymentTx`], as a real adapter would inside its
/// transaction (rollback is the adapters' business; the conformance suite checks it).
struct PassThroughUow {
    tx: Mutex<MockPaymentTx>,
    fail_to_begin: Option<StoreError>,
}

impl PaymentUnitOfWork for PassThroughUow {
    fn run(&self, work: &mut PaymentWork<'_>) -> Result<Payment, PayError> {
        if let Some(e) = &self.fail_to_begin {
            return Err(PayError::Store(e.clone()));
        }
        let mut tx = self.tx.lock().unwrap_or_else(PoisonError::into_inner);
        work(&mut *tx as &mut dyn PaymentTx)
    }
}

/// The mocks of one test, configured before [`World::app`] wires them.
struct World {
    queue: MockQueueStore,
    catalogue: MockCatalogueStore,
    reservations: MockReservationStore,
    accounts: MockAccountStore,
    tx: MockPaymentTx,
    fail_to_begin: Option<StoreError>,
    tokens: MockTokenGenerator,
    now: OffsetDateTime,
}

impl World {
    fn new() -> Self {
        Self {
            queue: MockQueueStore::new(),
            catalogue: MockCatalogueStore::new(),
            reservations: MockReservationStore::new(),
            accounts: MockAccountStore::new(),
            tx: MockPaymentTx::new(),
            fail_to_begin: None,
            tokens: MockTokenGenerator::new(),
            now: t0(),
        }
    }

    /// `value()` authorises as an ACTIVE token of `user` (expiring long after `now`).
    fn with_active(mut self, user: UserId) -> Self {
        let token = active(user, self.now + secs(600));
        self.queue.expect_find().returning(move |_| Ok(Some(token.clone())));
        self
    }

    fn app(self) -> Ticketing {
        let mut clock = MockClock::new();
        clock.expect_now().return_const(self.now);
        let ports = Ports {
            queue: Arc::new(self.queue),
            catalogue: Arc::new(self.catalogue),
            reservations: Arc::new(self.reservations),
            accounts: Arc::new(self.accounts),
            payments: Arc::new(PassThroughUow { tx: Mutex::new(self.tx), fail_to_begin: self.fail_to_begin }),
            clock: Arc::new(clock),
            tokens: Arc::new(self.tokens),
        };
        Ticketing::new(ports, Policy::default())
    }
}

fn authorized(app: &Ticketing) -> ActiveUser {
    app.authorize(value().as_str()).unwrap()
}

// ---- 1: issue ----------------------------------------------------------------------------------

#[test]
fn issue_stores_a_new_token_with_a_fresh_value_and_reports_created() {
    let user = UserId::random();
    let mut w = World::new();
    w.tokens.expect_generate().times(1).returning(value);
    let stored = QueueToken::new_waiting(value(), user, 4, t0());
    let returned = stored.clone();
    w.queue
        .expect_issue()
        .with(eq(user), eq(value()), eq(t0()))
        .times(1)
        .returning(move |_, _, _| Ok(IssueOutcome { token: returned.clone(), created: true }));
    w.queue.expect_cursor().returning(|| Ok(QueueCursor { admitted_through: 1, last_admission_at: None }));
    let issued = w.app().issue_token(user).unwrap();
    assert!(issued.created);
    assert_eq!(issued.view.token, stored);
    assert_eq!((issued.view.status, issued.view.position), (TokenStatus::Waiting, 3));
}

#[test]
fn issue_returns_the_existing_token_as_not_created() {
    let user = UserId::random();
    let mut w = World::new();
    w.tokens.expect_generate().returning(|| TokenValue::from_bytes([1; 32]));
    let existing = active(user, t0() + secs(100));
    let returned = existing.clone();
    w.queue.expect_issue().returning(move |_, _, _| Ok(IssueOutcome { token: returned.clone(), created: false }));
    w.queue.expect_cursor().returning(|| Ok(QueueCursor::default()));
    let issued = w.app().issue_token(user).unwrap();
    assert!(!issued.created);
    assert_eq!(issued.view.token, existing);
    assert_eq!(
        (issued.view.status, issued.view.position, issued.view.estimated_wait_secs),
        (TokenStatus::Active, 0, 0)
    );
}

#[test]
fn issue_propagates_store_errors() {
    let mut w = World::new();
    w.tokens.expect_generate().returning(value);
    w.queue.expect_issue().returning(|_, _, _| Err(down()));
    assert_eq!(w.app().issue_token(UserId::random()), Err(IssueTokenError::Store(down())));

    let mut w = World::new();
    w.tokens.expect_generate().returning(value);
    w.queue
        .expect_issue()
        .returning(|u, v, now| Ok(IssueOutcome { token: QueueToken::new_waiting(v, u, 1, now), created: true }));
    w.queue.expect_cursor().returning(|| Err(StoreError::Internal("boom".into())));
    assert_eq!(w.app().issue_token(UserId::random()), Err(IssueTokenError::Store(StoreError::Internal("boom".into()))));
}

// ---- 2: read a token ---------------------------------------------------------------------------

#[test]
fn read_token_rejects_malformed_values_without_asking_the_store() {
    let mut w = World::new();
    w.queue.expect_find_with_cursor().never();
    let app = w.app();
    let upper = value().as_str().to_uppercase();
    for bad in ["", "abc", upper.as_str(), &value().as_str()[1..], &format!("{} ", value().as_str())] {
        assert_eq!(app.read_token(bad), Err(ReadTokenError::Invalid), "{bad:?}");
    }
}

#[test]
fn read_token_unknown_is_invalid() {
    let mut w = World::new();
    w.queue.expect_find_with_cursor().with(eq(value())).returning(|_| Ok(None));
    assert_eq!(w.app().read_token(value().as_str()), Err(ReadTokenError::Invalid));
}

#[test]
fn read_token_reports_position_and_wait_of_a_waiting_token() {
    let user = UserId::random();
    let mut w = World::new();
    let cursor = QueueCursor { admitted_through: 10, last_admission_at: Some(t0() - secs(20)) };
    w.queue.expect_find_with_cursor().returning(move |_| Ok(Some((waiting(user, 13), cursor))));
    let view = w.app().read_token(value().as_str()).unwrap();
    assert_eq!((view.status, view.position), (TokenStatus::Waiting, 3));
    // Next tick in 40 s admits positions 1..=100.
    assert_eq!(view.estimated_wait_secs, 40);
}

#[test]
fn read_token_reads_an_active_token_past_its_ttl_as_expired() {
    let user = UserId::random();
    let mut w = World::new();
    w.queue.expect_find_with_cursor().returning(move |_| Ok(Some((active(user, t0()), QueueCursor::default()))));
    let view = w.app().read_token(value().as_str()).unwrap();
    assert_eq!((view.status, view.position), (TokenStatus::Expired, 0));
}

#[test]
fn read_token_propagates_store_errors() {
    let mut w = World::new();
    w.queue.expect_find_with_cursor().returning(|_| Err(down()));
    assert_eq!(w.app().read_token(value().as_str()), Err(ReadTokenError::Store(down())));
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
fn authorize_refuses_a_waiting_token_as_not_active() {
    let user = UserId::random();
    let mut w = World::new();
    w.queue.expect_find().returning(move |_| Ok(Some(waiting(user, 1))));
    assert_eq!(w.app().authorize(value().as_str()), Err(AuthorizeError::NotActive));
}

#[test]
fn authorize_accepts_an_active_token_until_the_exact_ttl() {
    let user = UserId::random();
    // One microsecond before expiry: ACTIVE.
    let mut w = World::new();
    let token = active(user, t0() + Duration::microseconds(1));
    let expected = token.clone();
    w.queue.expect_find().returning(move |_| Ok(Some(token.clone())));
    let who = w.app().authorize(value().as_str()).unwrap();
    assert_eq!((who.user_id(), who.token()), (user, &expected));
    // At expiry exactly: EXPIRED, even though the stored status still says ACTIVE.
    let mut w = World::new();
    w.queue.expect_find().returning(move |_| Ok(Some(active(user, t0()))));
    assert_eq!(w.app().authorize(value().as_str()), Err(AuthorizeError::Expired));
}

#[test]
fn authorize_refuses_a_token_used_up_by_a_payment() {
    let user = UserId::random();
    let mut w = World::new();
    let used = QueueToken { status: TokenStatus::Expired, ..active(user, t0() - secs(5)) };
    w.queue.expect_find().returning(move |_| Ok(Some(used.clone())));
    assert_eq!(w.app().authorize(value().as_str()), Err(AuthorizeError::Expired));
}

#[test]
fn authorize_propagates_store_errors() {
    let mut w = World::new();
    w.queue.expect_find().returning(|_| Err(down()));
    assert_eq!(w.app().authorize(value().as_str()), Err(AuthorizeError::Store(down())));
}

// ---- 3: admission, expiry, release, tick -------------------------------------------------------

#[test]
fn admit_expire_and_release_pass_the_policy_and_now_to_the_store() {
    let mut w = World::new();
    let policy = Policy::default().admission;
    w.queue.expect_admit().with(eq(policy), eq(t0())).times(1).returning(|_, _| Ok(AdmissionOutcome::Admitted(3)));
    w.queue.expect_expire_tokens().with(eq(t0())).times(1).returning(|_| Ok(2));
    w.reservations.expect_release_lapsed().with(eq(t0())).times(1).returning(|_| Ok(1));
    let app = w.app();
    assert_eq!(app.admit(), Ok(AdmissionOutcome::Admitted(3)));
    assert_eq!(app.expire_tokens(), Ok(2));
    assert_eq!(app.release_holds(), Ok(1));
}

#[test]
fn tick_reports_every_part() {
    let mut w = World::new();
    let next_at = t0() + secs(5);
    w.queue.expect_admit().returning(move |_, _| Ok(AdmissionOutcome::NotDue { next_at }));
    w.queue.expect_expire_tokens().returning(|_| Ok(4));
    w.reservations.expect_release_lapsed().returning(|_| Ok(6));
    let report = w.app().tick().unwrap();
    assert_eq!(
        report,
        TickReport { admission: AdmissionOutcome::NotDue { next_at }, tokens_expired: 4, holds_released: 6 }
    );
}

#[test]
fn tick_runs_every_part_after_a_failure_and_returns_the_first_error() {
    let mut w = World::new();
    w.queue.expect_admit().times(1).returning(|_, _| Err(down()));
    w.queue.expect_expire_tokens().times(1).returning(|_| Err(StoreError::Internal("second".into())));
    w.reservations.expect_release_lapsed().times(1).returning(|_| Ok(1));
    assert_eq!(w.app().tick(), Err(down()));

    let mut w = World::new();
    w.queue.expect_admit().times(1).returning(|_, _| Ok(AdmissionOutcome::Busy));
    w.queue.expect_expire_tokens().times(1).returning(|_| Ok(0));
    w.reservations.expect_release_lapsed().times(1).returning(|_| Err(down()));
    assert_eq!(w.app().tick(), Err(down()));
}

// ---- 4: catalogue ------------------------------------------------------------------------------

#[test]
fn concerts_are_passed_through_and_store_errors_propagate() {
    let user = UserId::random();
    let concert = Concert { id: ConcertId::random(), title: "T".into(), artist: "A".into(), venue: "V".into() };
    let listed = vec![concert];
    let mut w = World::new().with_active(user);
    let returned = listed.clone();
    w.catalogue.expect_concerts().times(1).returning(move || Ok(returned.clone()));
    let app = w.app();
    assert_eq!(app.concerts(&authorized(&app)), Ok(listed));

    let mut w = World::new().with_active(user);
    w.catalogue.expect_concerts().returning(|| Err(down()));
    let app = w.app();
    assert_eq!(app.concerts(&authorized(&app)), Err(ListConcertsError::Store(down())));
}

#[test]
fn schedules_of_an_unknown_concert_are_not_found() {
    let user = UserId::random();
    let mut w = World::new().with_active(user);
    w.catalogue.expect_schedules().returning(|_, _| Ok(None));
    let app = w.app();
    assert_eq!(app.schedules(&authorized(&app), ConcertId::random()), Err(ListSchedulesError::NotFound));

    let mut w = World::new().with_active(user);
    w.catalogue.expect_schedules().returning(|_, _| Err(down()));
    let app = w.app();
    assert_eq!(app.schedules(&authorized(&app), ConcertId::random()), Err(ListSchedulesError::Store(down())));
}

#[test]
fn schedules_keep_only_future_ones_soonest_first() {
    let user = UserId::random();
    let concert = ConcertId::random();
    let summary = |starts_at| ScheduleSummary {
        id: ScheduleId::random(),
        concert_id: concert,
        starts_at,
        total_seats: 50,
        available_seats: 49,
    };
    let late = summary(t0() + Duration::days(30));
    let soon = summary(t0() + Duration::microseconds(1));
    let mid = summary(t0() + Duration::days(7));
    let started_now = summary(t0());
    let past = summary(t0() - Duration::days(1));
    let from_store = vec![late.clone(), started_now, soon.clone(), past, mid.clone()];
    let mut w = World::new().with_active(user);
    w.catalogue.expect_schedules().with(eq(concert), eq(t0())).returning(move |_, _| Ok(Some(from_store.clone())));
    let app = w.app();
    assert_eq!(app.schedules(&authorized(&app), concert), Ok(vec![soon, mid, late]));
}

#[test]
fn seats_of_an_unknown_schedule_are_not_found() {
    let user = UserId::random();
    let mut w = World::new().with_active(user);
    w.catalogue.expect_seats().returning(|_| Ok(None));
    let app = w.app();
    assert_eq!(app.seats(&authorized(&app), ScheduleId::random()), Err(ListSeatsError::NotFound));

    let mut w = World::new().with_active(user);
    w.catalogue.expect_seats().returning(|_| Err(down()));
    let app = w.app();
    assert_eq!(app.seats(&authorized(&app), ScheduleId::random()), Err(ListSeatsError::Store(down())));
}

#[test]
fn seat_status_is_derived_at_now_and_seats_come_by_number() {
    let user = UserId::random();
    let schedule = ScheduleId::random();
    let record = |number, claim: Option<(ReservationStatus, OffsetDateTime)>| SeatRecord {
        seat: Seat { id: SeatId::random(), schedule_id: schedule, number, price: Won::new(1_000) },
        claim: claim.map(|(status, held_until)| SeatClaim {
            reservation_id: ReservationId::random(),
            status,
            held_until,
        }),
    };
    let records = vec![
        record(4, Some((ReservationStatus::Paid, t0() - secs(600)))),
        record(1, None),
        record(3, Some((ReservationStatus::Held, t0()))), // lapsed exactly now: AVAILABLE
        record(2, Some((ReservationStatus::Held, t0() + secs(1)))),
        record(5, Some((ReservationStatus::Held, t0() - secs(1)))), // lapsed, not yet released
    ];
    let mut w = World::new().with_active(user);
    w.catalogue.expect_seats().with(eq(schedule)).returning(move |_| Ok(Some(records.clone())));
    let app = w.app();
    let seats = app.seats(&authorized(&app), schedule).unwrap();
    let got: Vec<(u32, SeatStatus)> = seats.iter().map(|s| (s.seat.number, s.status)).collect();
    assert_eq!(
        got,
        vec![
            (1, SeatStatus::Available),
            (2, SeatStatus::Held),
            (3, SeatStatus::Available),
            (4, SeatStatus::Sold),
            (5, SeatStatus::Available),
        ]
    );
}

// ---- 5: reservations ---------------------------------------------------------------------------

#[test]
fn reserve_holds_for_the_token_user_until_now_plus_the_hold() {
    let user = UserId::random();
    let (schedule, seat) = (ScheduleId::random(), SeatId::random());
    let mut w = World::new().with_active(user);
    w.reservations
        .expect_hold()
        .withf(move |req| {
            req.user_id == user
                && req.schedule_id == schedule
                && req.seat_id == seat
                && req.now == t0()
                && req.held_until == t0() + secs(300)
        })
        .times(1)
        .returning(|req| {
            Ok(HoldOutcome::Held(Reservation {
                id: req.reservation_id,
                user_id: req.user_id,
                schedule_id: req.schedule_id,
                seat_id: req.seat_id,
                seat_number: 9,
                price: Won::new(80_000),
                status: ReservationStatus::Held,
                created_at: req.now,
                held_until: req.held_until,
                paid_at: None,
            }))
        });
    let app = w.app();
    let r = app.reserve(&authorized(&app), schedule, seat).unwrap();
    assert_eq!((r.user_id, r.seat_id, r.status, r.held_until), (user, seat, ReservationStatus::Held, t0() + secs(300)));
}

#[test]
fn reserve_maps_hold_refusals_and_store_errors() {
    let user = UserId::random();
    for (outcome, expected) in [
        (Ok(HoldOutcome::NoSuchSeat), ReserveError::NotFound),
        (Ok(HoldOutcome::SeatTaken), ReserveError::SeatUnavailable),
        (Err(down()), ReserveError::Store(down())),
    ] {
        let mut w = World::new().with_active(user);
        w.reservations.expect_hold().times(1).returning(move |_| outcome.clone());
        let app = w.app();
        assert_eq!(app.reserve(&authorized(&app), ScheduleId::random(), SeatId::random()), Err(expected));
    }
}

#[test]
fn reservation_of_another_user_or_unknown_is_not_found() {
    let (user, other) = (UserId::random(), UserId::random());
    let foreign = reservation(other, ReservationStatus::Held, t0() + secs(60));
    let id = foreign.id;
    let mut w = World::new().with_active(user);
    w.reservations.expect_find().returning(move |q| Ok((q == id).then(|| foreign.clone())));
    let app = w.app();
    let who = authorized(&app);
    assert_eq!(app.reservation(&who, id), Err(GetReservationError::NotFound));
    assert_eq!(app.reservation(&who, ReservationId::random()), Err(GetReservationError::NotFound));

    let mut w = World::new().with_active(user);
    w.reservations.expect_find().returning(|_| Err(down()));
    let app = w.app();
    assert_eq!(app.reservation(&authorized(&app), id), Err(GetReservationError::Store(down())));
}

#[test]
fn own_reservation_reads_with_its_status_as_of_now() {
    let user = UserId::random();
    let lapsed = reservation(user, ReservationStatus::Held, t0());
    let id = lapsed.id;
    let mut w = World::new().with_active(user);
    w.reservations.expect_find().returning(move |_| Ok(Some(lapsed.clone())));
    let app = w.app();
    let r = app.reservation(&authorized(&app), id).unwrap();
    assert_eq!((r.id, r.status), (id, ReservationStatus::Expired));
}

// ---- 7: payment --------------------------------------------------------------------------------

/// A world whose payment transaction locks `r` and must make no write.
fn pay_world(user: UserId, r: &Reservation) -> World {
    let mut w = World::new().with_active(user);
    let locked = r.clone();
    w.tx.expect_lock_reservation().with(eq(r.id)).times(1).returning(move |_| Ok(Some(locked.clone())));
    w.tx.expect_mark_paid().never();
    w.tx.expect_record_payment().never();
    w.tx.expect_append_ledger().never();
    w.tx.expect_expire_tokens_of().never();
    w
}

#[test]
fn pay_unknown_reservation_is_not_found_and_debits_nothing() {
    let user = UserId::random();
    let mut w = World::new().with_active(user);
    w.tx.expect_lock_reservation().times(1).returning(|_| Ok(None));
    w.tx.expect_debit().never();
    let app = w.app();
    assert_eq!(app.pay(&authorized(&app), ReservationId::random()), Err(PayError::NotFound));
}

#[test]
fn pay_another_users_reservation_is_not_found_and_debits_nothing() {
    let user = UserId::random();
    let r = reservation(UserId::random(), ReservationStatus::Held, t0() + secs(60));
    let mut w = pay_world(user, &r);
    w.tx.expect_debit().never();
    let app = w.app();
    assert_eq!(app.pay(&authorized(&app), r.id), Err(PayError::NotFound));
}

#[test]
fn pay_a_paid_reservation_is_already_paid() {
    let user = UserId::random();
    let r = Reservation { paid_at: Some(t0() - secs(5)), ..reservation(user, ReservationStatus::Paid, t0() - secs(1)) };
    let mut w = pay_world(user, &r);
    w.tx.expect_debit().never();
    let app = w.app();
    assert_eq!(app.pay(&authorized(&app), r.id), Err(PayError::AlreadyPaid));
}

#[test]
fn pay_at_the_exact_lapse_or_after_release_is_hold_expired() {
    let user = UserId::random();
    for r in [
        reservation(user, ReservationStatus::Held, t0()),
        reservation(user, ReservationStatus::Expired, t0() + secs(9)),
    ] {
        let mut w = pay_world(user, &r);
        w.tx.expect_debit().never();
        let app = w.app();
        assert_eq!(app.pay(&authorized(&app), r.id), Err(PayError::HoldExpired));
    }
}

#[test]
fn pay_with_insufficient_balance_stops_after_the_debit() {
    let user = UserId::random();
    let r = reservation(user, ReservationStatus::Held, t0() + secs(1));
    let mut w = pay_world(user, &r);
    w.tx.expect_debit()
        .with(eq(user), eq(r.price))
        .times(1)
        .returning(|_, _| Ok(DebitOutcome::Insufficient(Won::new(100))));
    let app = w.app();
    assert_eq!(
        app.pay(&authorized(&app), r.id),
        Err(PayError::InsufficientBalance { balance: Won::new(100), price: r.price })
    );
}

#[test]
fn pay_success_makes_every_write_in_order() {
    let user = UserId::random();
    let r = reservation(user, ReservationStatus::Held, t0() + Duration::microseconds(1));
    let (rid, price) = (r.id, r.price);
    let after = Won::new(1_000_000 - price.get());
    let mut w = World::new().with_active(user);
    let mut seq = Sequence::new();
    let locked = r.clone();
    w.tx.expect_lock_reservation()
        .with(eq(rid))
        .times(1)
        .in_sequence(&mut seq)
        .returning(move |_| Ok(Some(locked.clone())));
    w.tx.expect_debit()
        .with(eq(user), eq(price))
        .times(1)
        .in_sequence(&mut seq)
        .returning(move |_, _| Ok(DebitOutcome::Debited(after)));
    w.tx.expect_mark_paid().with(eq(rid), eq(t0())).times(1).in_sequence(&mut seq).returning(|_, _| Ok(()));
    let recorded: Arc<Mutex<Option<PaymentId>>> = Arc::default();
    let seen = Arc::clone(&recorded);
    w.tx.expect_record_payment()
        .withf(move |p: &Payment| {
            p.reservation_id == rid
                && p.user_id == user
                && p.amount == price
                && p.balance_after == after
                && p.paid_at == t0()
        })
        .times(1)
        .in_sequence(&mut seq)
        .returning(move |p| {
            *seen.lock().unwrap() = Some(p.id);
            Ok(())
        });
    let paid_id = Arc::clone(&recorded);
    w.tx.expect_append_ledger()
        .withf(move |e: &LedgerEntry| {
            e.user_id == user
                && e.kind == LedgerKind::Payment
                && e.amount == Won::new(-price.get())
                && e.balance_after == after
                && e.at == t0()
                && e.reservation_id == Some(rid)
                && e.payment_id == *paid_id.lock().unwrap()
        })
        .times(1)
        .in_sequence(&mut seq)
        .returning(|_| Ok(()));
    w.tx.expect_expire_tokens_of().with(eq(user), eq(t0())).times(1).in_sequence(&mut seq).returning(|_, _| Ok(()));
    let app = w.app();
    let payment = app.pay(&authorized(&app), rid).unwrap();
    assert_eq!(Some(payment.id), *recorded.lock().unwrap());
    assert_eq!(
        (payment.reservation_id, payment.user_id, payment.amount, payment.balance_after, payment.paid_at),
        (rid, user, price, after, t0())
    );
}

#[test]
fn pay_stops_at_the_first_store_error() {
    let user = UserId::random();
    let r = reservation(user, ReservationStatus::Held, t0() + secs(60));
    let mut w = World::new().with_active(user);
    let locked = r.clone();
    w.tx.expect_lock_reservation().returning(move |_| Ok(Some(locked.clone())));
    w.tx.expect_debit().times(1).returning(|_, _| Ok(DebitOutcome::Debited(Won::new(1))));
    w.tx.expect_mark_paid().times(1).returning(|_, _| Err(down()));
    w.tx.expect_record_payment().never();
    w.tx.expect_append_ledger().never();
    w.tx.expect_expire_tokens_of().never();
    let app = w.app();
    assert_eq!(app.pay(&authorized(&app), r.id), Err(PayError::Store(down())));

    let mut w = World::new().with_active(user);
    w.tx.expect_lock_reservation().times(1).returning(|_| Err(down()));
    w.tx.expect_debit().never();
    let app = w.app();
    assert_eq!(app.pay(&authorized(&app), r.id), Err(PayError::Store(down())));
}

#[test]
fn pay_reports_a_transaction_that_cannot_begin() {
    let user = UserId::random();
    let mut w = World::new().with_active(user);
    w.fail_to_begin = Some(down());
    w.tx.expect_lock_reservation().never();
    let app = w.app();
    assert_eq!(app.pay(&authorized(&app), ReservationId::random()), Err(PayError::Store(down())));
}

// ---- 8-9: balance ------------------------------------------------------------------------------

#[test]
fn balance_and_ledger_are_passed_through() {
    let user = UserId::random();
    let entry = LedgerEntry {
        id: LedgerEntryId::random(),
        user_id: user,
        kind: LedgerKind::Charge,
        amount: Won::new(5),
        balance_after: Won::new(5),
        at: t0(),
        payment_id: None,
        reservation_id: None,
    };
    let mut w = World::new();
    w.accounts.expect_balance().with(eq(user)).returning(|_| Ok(Won::new(5)));
    let listed = vec![entry];
    let returned = listed.clone();
    w.accounts.expect_ledger().with(eq(user)).returning(move |_| Ok(returned.clone()));
    let app = w.app();
    assert_eq!(app.balance(user), Ok(Won::new(5)));
    assert_eq!(app.ledger(user), Ok(listed));

    let mut w = World::new();
    w.accounts.expect_balance().returning(|_| Err(down()));
    w.accounts.expect_ledger().returning(|_| Err(down()));
    let app = w.app();
    assert_eq!(app.balance(user), Err(BalanceError::Store(down())));
    assert_eq!(app.ledger(user), Err(BalanceError::Store(down())));
}

#[test]
fn charge_rejects_amounts_outside_one_to_one_billion_without_touching_the_store() {
    let mut w = World::new();
    w.accounts.expect_credit().never();
    let app = w.app();
    for bad in [0, -1, 1_000_000_001, i64::MIN, i64::MAX] {
        assert_eq!(app.charge(UserId::random(), bad), Err(ChargeError::InvalidAmount), "{bad}");
    }
}

#[test]
fn charge_credits_under_the_contract_limit_at_now() {
    let user = UserId::random();
    let mut w = World::new();
    for amount in [1, 1_000_000_000] {
        w.accounts
            .expect_credit()
            .withf(move |u, a, limit, _, at| {
                *u == user && *a == Won::new(amount) && *limit == BALANCE_LIMIT && *at == t0()
            })
            .times(1)
            .returning(move |_, a, _, _, _| Ok(CreditOutcome::Credited(Won::new(7 + a.get()))));
    }
    let app = w.app();
    assert_eq!(app.charge(user, 1), Ok(Won::new(8)));
    assert_eq!(app.charge(user, 1_000_000_000), Ok(Won::new(1_000_000_007)));
}

#[test]
fn charge_over_the_limit_is_balance_limit_with_the_unchanged_balance() {
    let mut w = World::new();
    w.accounts.expect_credit().returning(|_, _, _, _, _| Ok(CreditOutcome::LimitExceeded(Won::new(9_999_999_999))));
    assert_eq!(
        w.app().charge(UserId::random(), 2),
        Err(ChargeError::BalanceLimit { balance: Won::new(9_999_999_999), amount: Won::new(2) })
    );
}

#[test]
fn charge_propagates_store_errors() {
    let mut w = World::new();
    w.accounts.expect_credit().returning(|_, _, _, _, _| Err(down()));
    assert_eq!(w.app().charge(UserId::random(), 10), Err(ChargeError::Store(down())));
}
