//! What only the in-memory adapter has: the failure switch (standing in for a database that
//! is down), recovery from a panic inside a payment's decision, and starting settings.
#![allow(clippy::unwrap_used, clippy::panic, reason = "test code: a failure must fail the test")]

use std::panic::{self, AssertUnwindSafe};
use std::sync::Arc;

use adapters_local::OsRandom;
use adapters_memory::MemoryStore;
use domain::account::{CreditRequest, LedgerQuery};
use domain::catalogue::{Concert, NewConcert, NewSchedule, Seat};
use domain::clock::{Clock, ManualClock};
use domain::error::{
    AuthorizeError, BalanceError, ChargeError, GetReservationError, HistoryError, IssueTokenError, ListConcertsError,
    ListSchedulesError, ListSeatsError, PayError, ReadTokenError, ReserveError, SalesError,
};
use domain::idempotency::{Effect, IdempotencyKey, IdempotencyRequest, Outcome, StoredResponse};
use domain::ids::{ConcertId, LedgerEntryId, ReservationId, ScheduleId, SeatId, UserId};
use domain::money::{Won, BALANCE_LIMIT};
use domain::payment::PaymentRequest;
use domain::ports::StoreError;
use domain::queue::{AdmissionPolicy, QueueSettings, SettingsChange, SettingsPatch};
use domain::random::Randomness;
use domain::reservation::HoldRequest;
use domain::service::{ActiveUser, Policy, Ports, Ticketing};
use time::Duration;

struct World {
    store: MemoryStore,
    clock: ManualClock,
    ports: Ports,
    app: Ticketing,
    concert: NewConcert,
}

fn world() -> World {
    let store = MemoryStore::new();
    let clock = ManualClock::at_epoch();
    let ports = store.ports(Arc::new(clock.clone()), Arc::new(OsRandom));
    let concert_id = ConcertId::from_uuid(OsRandom.uuid());
    let schedule_id = ScheduleId::from_uuid(OsRandom.uuid());
    let seats = (1..=10)
        .map(|number| Seat { id: SeatId::from_uuid(OsRandom.uuid()), schedule_id, number, price: Won::new(10_000) })
        .collect();
    let concert = NewConcert {
        concert: Concert { id: concert_id, title: "T".into(), artist: String::new(), venue: String::new() },
        schedules: vec![NewSchedule { id: schedule_id, concert_id, starts_at: clock.now() + Duration::days(7), seats }],
    };
    assert!(ports.catalogue.create_concert(&concert, None).unwrap());
    let app = Ticketing::new(ports.clone(), Policy::default());
    World { store, clock, ports, app, concert }
}

/// A user with an ACTIVE token, a balance and one held seat.
fn customer(w: &World) -> (ActiveUser, ReservationId) {
    let user = UserId::from_uuid(OsRandom.uuid());
    let token = w.app.issue_token(user).unwrap().view.token.value;
    w.app.admit().unwrap();
    let who = w.app.authorize(token.as_str()).unwrap();
    w.app.charge(user, 1_000_000, None).unwrap();
    let schedule = &w.concert.schedules[0];
    let r = w.app.reserve(&who, schedule.id, schedule.seats[0].id).unwrap();
    (who, r.id)
}

/// Everything observable, read through the ports.
fn dump(w: &World, who: &ActiveUser, r: ReservationId) -> String {
    let p = &w.ports;
    let schedule = w.concert.schedules[0].id;
    let all = LedgerQuery { before: None, limit: 1_000 };
    format!(
        "{:?}",
        (
            p.queue.find(&who.token().value).unwrap(),
            p.queue.stats().unwrap(),
            p.settings.load().unwrap(),
            p.reservations.find(r).unwrap(),
            p.catalogue.seats(schedule).unwrap(),
            p.catalogue.concerts().unwrap(),
            p.catalogue.sales(w.concert.concert.id, w.clock.now()).unwrap(),
            p.accounts.balance(who.user_id()).unwrap(),
            p.accounts.ledger(who.user_id(), &all).unwrap(),
        )
    )
}

#[test]
fn ping_follows_the_failure_switch() {
    let store = MemoryStore::new();
    assert_eq!(store.ping(), Ok(()));
    let ports = store.ports(Arc::new(ManualClock::at_epoch()), Arc::new(OsRandom));
    store.set_failure(Some(StoreError::Internal("disk on fire".into())));
    assert_eq!(store.ping(), Err(StoreError::Internal("disk on fire".into())));
    assert_eq!(ports.queue.ping(), Err(StoreError::Internal("disk on fire".into())));
    store.set_failure(None);
    assert_eq!(store.ping(), Ok(()));
    assert_eq!(ports.queue.ping(), Ok(()));
}

#[test]
fn while_the_switch_is_set_every_use_case_fails_with_it_and_nothing_changes() {
    let w = world();
    let (who, r) = customer(&w);
    // Time moves on so that admission, expiry and release would all have work to do.
    w.app.issue_token(UserId::from_uuid(OsRandom.uuid())).unwrap();
    w.clock.advance(Duration::seconds(600));
    let before = dump(&w, &who, r);

    let e = StoreError::Unavailable("connection refused".into());
    w.store.set_failure(Some(e.clone()));
    let app = &w.app;
    let token = who.token().value.as_str();
    let schedule = &w.concert.schedules[0];
    let key = || Some(IdempotencyRequest { key: IdempotencyKey::parse("k").unwrap(), render: &render });
    assert_eq!(app.issue_token(UserId::from_uuid(OsRandom.uuid())), Err(IssueTokenError::Store(e.clone())));
    assert_eq!(app.read_token(token), Err(ReadTokenError::Store(e.clone())));
    assert_eq!(app.authorize(token), Err(AuthorizeError::Store(e.clone())));
    assert_eq!(app.admit(), Err(e.clone()));
    assert_eq!(app.expire_tokens(), Err(e.clone()));
    assert_eq!(app.release_holds(), Err(e.clone()));
    assert_eq!(app.purge_idempotency_keys(), Err(e.clone()));
    assert_eq!(app.tick(), Err(e.clone()));
    assert_eq!(app.queue_state(), Err(e.clone()));
    let pause = SettingsPatch::new(SettingsChange { paused: Some(true), ..SettingsChange::default() }).unwrap();
    assert!(app.update_queue("test", &pause).is_err());
    assert_eq!(app.concerts(&who), Err(ListConcertsError::Store(e.clone())));
    assert_eq!(app.schedules(&who, w.concert.concert.id), Err(ListSchedulesError::Store(e.clone())));
    assert_eq!(app.seats(&who, schedule.id), Err(ListSeatsError::Store(e.clone())));
    assert_eq!(app.sales(w.concert.concert.id), Err(SalesError::Store(e.clone())));
    assert_eq!(app.reserve(&who, schedule.id, schedule.seats[1].id), Err(ReserveError::Store(e.clone())));
    assert_eq!(app.reservation(&who, r), Err(GetReservationError::Store(e.clone())));
    assert_eq!(app.pay(token, r, None), Err(PayError::Store(e.clone())));
    assert_eq!(app.pay(token, r, key()), Err(PayError::Store(e.clone())));
    assert_eq!(app.balance(who.user_id()), Err(BalanceError::Store(e.clone())));
    assert_eq!(app.balance_history(who.user_id(), None, None), Err(HistoryError::Store(e.clone())));
    assert_eq!(app.charge(who.user_id(), 10, None), Err(ChargeError::Store(e.clone())));
    assert_eq!(app.charge(who.user_id(), 10, key()), Err(ChargeError::Store(e.clone())));
    // The ports themselves, with arguments the use cases would not pass.
    let p = &w.ports;
    let now = w.clock.now();
    assert_eq!(p.queue.issue(UserId::from_uuid(OsRandom.uuid()), OsRandom.token(), now), Err(e.clone()));
    assert_eq!(p.queue.use_up(&who.token().value, now), Err(e.clone()));
    let credit = CreditRequest {
        user: who.user_id(),
        amount: Won::new(1),
        limit: BALANCE_LIMIT,
        entry: LedgerEntryId::from_uuid(OsRandom.uuid()),
        at: now,
    };
    assert_eq!(p.accounts.credit(&credit, None), Err(e.clone()));
    let hold = HoldRequest {
        reservation_id: ReservationId::from_uuid(OsRandom.uuid()),
        user_id: who.user_id(),
        schedule_id: schedule.id,
        seat_id: schedule.seats[2].id,
        now,
        held_until: now + Duration::seconds(1),
        max_live_holds: 100,
    };
    assert_eq!(p.reservations.hold(&hold), Err(e.clone()));
    assert_eq!(p.reservations.release_lapsed(now + Duration::days(1), 100), Err(e.clone()));
    assert_eq!(p.idempotency.purge_expired(now + Duration::days(10), 100), Err(e.clone()));
    let mut concert = w.concert.clone();
    concert.concert.id = ConcertId::from_uuid(OsRandom.uuid());
    concert.schedules.clear();
    assert_eq!(p.catalogue.create_concert(&concert, None), Err(e.clone()));
    let request = PaymentRequest { reservation: r, user: who.user_id(), token: who.token().value.clone() };
    let mut called = false;
    let result = p.payments.pay(&request, None, &mut |_| {
        called = true;
        Err(PayError::NotFound)
    });
    assert_eq!((result, called), (Err(PayError::Store(e.clone())), false), "no decision without the facts");

    w.store.set_failure(None);
    assert_eq!(dump(&w, &who, r), before, "nothing changed while the store was failing");
    // And the store works again.
    assert!(w.app.tick().is_ok());
}

fn render(effect: &Effect) -> StoredResponse {
    StoredResponse { status: 200, body: format!("{effect:?}") }
}

#[test]
fn a_panic_inside_a_payments_decision_changes_nothing_and_leaves_the_store_usable() {
    let w = world();
    let (who, r) = customer(&w);
    let before = dump(&w, &who, r);
    let request = PaymentRequest { reservation: r, user: who.user_id(), token: who.token().value.clone() };
    let outcome = panic::catch_unwind(AssertUnwindSafe(|| {
        let _ = w.ports.payments.pay(&request, None, &mut |_| panic!("the decision panics"));
    }));
    assert!(outcome.is_err());
    // The mutex is poisoned now; the store recovers it, and nothing was written.
    assert_eq!(dump(&w, &who, r), before);
    assert_eq!(w.store.ping(), Ok(()));
    let Outcome::Fresh { value: paid, .. } = w.app.pay(who.token().value.as_str(), r, None).unwrap() else {
        panic!("an unkeyed payment runs");
    };
    assert_eq!(paid.reservation_id, r);
}

#[test]
fn settings_start_as_given_and_each_store_is_its_own() {
    let start = QueueSettings {
        paused: true,
        admission: AdmissionPolicy { batch: 7, interval: Duration::seconds(5), ..AdmissionPolicy::default() },
    };
    let clock: Arc<dyn Clock> = Arc::new(ManualClock::at_epoch());
    let configured = MemoryStore::with_settings(start).ports(clock.clone(), Arc::new(OsRandom));
    assert_eq!(configured.settings.load().unwrap(), start);
    let default = MemoryStore::new().ports(clock, Arc::new(OsRandom));
    assert_eq!(default.settings.load().unwrap(), QueueSettings::default());
    let patch = SettingsPatch::new(SettingsChange { paused: Some(false), ..SettingsChange::default() }).unwrap();
    assert_eq!(configured.settings.update(&patch, None).unwrap(), (start, QueueSettings { paused: false, ..start }));
    assert_eq!(default.settings.load().unwrap(), QueueSettings::default());
}
