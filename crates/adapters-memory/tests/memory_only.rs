//! What only the in-memory adapter has: the failure switch (standing in for a database that
//! is down) and recovery from a panic inside a payment.
#![allow(clippy::unwrap_used, reason = "test set-up helpers: a failure must fail the test")]

use std::panic::{self, AssertUnwindSafe};
use std::sync::Arc;

use adapters_memory::MemoryStore;
use domain::clock::{Clock, ManualClock};
use domain::demo;
use domain::error::{
    AuthorizeError, BalanceError, ChargeError, GetReservationError, IssueTokenError, ListConcertsError,
    ListSchedulesError, ListSeatsError, PayError, ReadTokenError, ReserveError,
};
use domain::ids::{ConcertId, LedgerEntryId, ReservationId, UserId};
use domain::money::{Won, BALANCE_LIMIT};
use domain::ports::StoreError;
use domain::queue::{OsTokenGenerator, TokenGenerator};
use domain::reservation::HoldRequest;
use domain::service::{ActiveUser, Policy, Ports, Ticketing};
use time::Duration;

struct World {
    store: MemoryStore,
    clock: ManualClock,
    ports: Ports,
    app: Ticketing,
    demo: demo::DemoCatalogue,
}

fn world() -> World {
    let store = MemoryStore::new();
    let clock = ManualClock::at_epoch();
    let demo = demo::catalogue(clock.now());
    assert!(store.seed(&demo));
    let ports = store.ports(Arc::new(clock.clone()), Arc::new(OsTokenGenerator));
    let app = Ticketing::new(ports.clone(), Policy::default());
    World { store, clock, ports, app, demo }
}

/// A user with an ACTIVE token, a balance and one held seat.
fn customer(w: &World) -> (ActiveUser, ReservationId) {
    let user = UserId::random();
    let token = w.app.issue_token(user).unwrap().view.token.value;
    w.app.admit().unwrap();
    let who = w.app.authorize(token.as_str()).unwrap();
    w.app.charge(user, 1_000_000).unwrap();
    let schedule = &w.demo.schedules[0];
    let r = w.app.reserve(&who, schedule.id, schedule.seats[0].id).unwrap();
    (who, r.id)
}

/// Everything observable, read through the ports.
fn dump(w: &World, who: &ActiveUser, r: ReservationId) -> String {
    let p = &w.ports;
    let schedule = w.demo.schedules[0].id;
    format!(
        "{:?}",
        (
            p.queue.find(&who.token().value).unwrap(),
            p.queue.cursor().unwrap(),
            p.reservations.find(r).unwrap(),
            p.catalogue.seats(schedule).unwrap(),
            p.catalogue.schedules(w.demo.concerts[0].id, w.clock.now()).unwrap(),
            p.accounts.balance(who.user_id()).unwrap(),
            p.accounts.ledger(who.user_id()).unwrap(),
        )
    )
}

#[test]
fn ping_follows_the_failure_switch() {
    let store = MemoryStore::new();
    assert_eq!(store.ping(), Ok(()));
    store.set_failure(Some(StoreError::Internal("disk on fire".into())));
    assert_eq!(store.ping(), Err(StoreError::Internal("disk on fire".into())));
    store.set_failure(None);
    assert_eq!(store.ping(), Ok(()));
}

#[test]
fn while_the_switch_is_set_every_use_case_fails_with_it_and_nothing_changes() {
    let w = world();
    let (who, r) = customer(&w);
    // Time moves on so that admission, expiry and release would all have work to do.
    w.app.issue_token(UserId::random()).unwrap();
    w.clock.advance(Duration::seconds(600));
    let before = dump(&w, &who, r);

    let e = StoreError::Unavailable("connection refused".into());
    w.store.set_failure(Some(e.clone()));
    let app = &w.app;
    let token = who.token().value.as_str();
    let schedule = &w.demo.schedules[0];
    assert_eq!(app.issue_token(UserId::random()), Err(IssueTokenError::Store(e.clone())));
    assert_eq!(app.read_token(token), Err(ReadTokenError::Store(e.clone())));
    assert_eq!(app.authorize(token), Err(AuthorizeError::Store(e.clone())));
    assert_eq!(app.admit(), Err(e.clone()));
    assert_eq!(app.expire_tokens(), Err(e.clone()));
    assert_eq!(app.release_holds(), Err(e.clone()));
    assert_eq!(app.tick(), Err(e.clone()));
    assert_eq!(app.concerts(&who), Err(ListConcertsError::Store(e.clone())));
    assert_eq!(app.schedules(&who, ConcertId::random()), Err(ListSchedulesError::Store(e.clone())));
    assert_eq!(app.seats(&who, schedule.id), Err(ListSeatsError::Store(e.clone())));
    assert_eq!(app.reserve(&who, schedule.id, schedule.seats[1].id), Err(ReserveError::Store(e.clone())));
    assert_eq!(app.reservation(&who, r), Err(GetReservationError::Store(e.clone())));
    assert_eq!(app.pay(&who, r), Err(PayError::Store(e.clone())));
    assert_eq!(app.balance(who.user_id()), Err(BalanceError::Store(e.clone())));
    assert_eq!(app.ledger(who.user_id()), Err(BalanceError::Store(e.clone())));
    assert_eq!(app.charge(who.user_id(), 10), Err(ChargeError::Store(e.clone())));
    // The ports themselves, with arguments the use cases would not pass.
    let p = &w.ports;
    let now = w.clock.now();
    assert_eq!(p.queue.issue(UserId::random(), OsTokenGenerator.generate(), now), Err(e.clone()));
    assert_eq!(
        p.accounts.credit(who.user_id(), Won::new(1), BALANCE_LIMIT, LedgerEntryId::random(), now),
        Err(e.clone())
    );
    let hold = HoldRequest {
        reservation_id: ReservationId::random(),
        user_id: who.user_id(),
        schedule_id: schedule.id,
        seat_id: schedule.seats[2].id,
        now,
        held_until: now + Duration::seconds(1),
    };
    assert_eq!(p.reservations.hold(&hold), Err(e.clone()));
    assert_eq!(p.reservations.release_lapsed(now + Duration::days(1)), Err(e.clone()));

    w.store.set_failure(None);
    assert_eq!(dump(&w, &who, r), before, "nothing changed while the store was failing");
    // And the store works again.
    assert!(w.app.tick().is_ok());
}

#[test]
fn a_panic_inside_a_payment_undoes_its_writes_and_leaves_the_store_usable() {
    let w = world();
    let (who, r) = customer(&w);
    let before = dump(&w, &who, r);
    let user = who.user_id();
    let outcome = panic::catch_unwind(AssertUnwindSafe(|| {
        w.ports.payments.run(&mut |tx| {
            tx.debit(user, Won::new(500))?;
            tx.mark_paid(r, w.clock.now())?;
            tx.expire_tokens_of(user, w.clock.now())?;
            panic!("the work panics half-way");
        })
    }));
    assert!(outcome.is_err());
    // The mutex is poisoned now; the store recovers it and the writes were undone.
    assert_eq!(dump(&w, &who, r), before);
    assert_eq!(w.store.ping(), Ok(()));
    let paid = w.app.pay(&who, r).unwrap();
    assert_eq!(paid.reservation_id, r);
}
