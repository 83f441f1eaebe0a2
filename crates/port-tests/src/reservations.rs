//! [`domain::ports::ReservationStore`]: holding seats, lapses and their release.

use domain::error::ReserveError;
use domain::ids::{ReservationId, SeatId};
use domain::reservation::{HoldOutcome, HoldRequest, ReservationStatus};
use time::Duration;

use crate::fixture::Fixture;
use crate::Harness;

/// A hold stores a HELD reservation with the seat's number and price.
pub fn hold_stores_a_held_reservation<H: Harness>() {
    let fx = Fixture::<H>::seeded();
    let who = fx.active_user();
    let seat = fx.seat(0, 7).clone();
    let r = fx.app.reserve(&who, fx.schedule(0).id, seat.id).unwrap();
    assert_eq!((r.user_id, r.schedule_id, r.seat_id), (who.user_id(), fx.schedule(0).id, seat.id));
    assert_eq!((r.seat_number, r.price), (7, seat.price));
    assert_eq!(r.status, ReservationStatus::Held);
    assert_eq!(r.created_at, fx.now());
    assert_eq!(r.held_until, fx.now() + Duration::seconds(300));
    assert_eq!(r.paid_at, None);
    assert_eq!(fx.stored(r.id), r);
    assert_eq!(fx.app.reservation(&who, r.id).unwrap(), r);

    // The store keeps the id it was given.
    let id = ReservationId::random();
    let req = HoldRequest {
        reservation_id: id,
        user_id: who.user_id(),
        schedule_id: fx.schedule(0).id,
        seat_id: fx.seat(0, 8).id,
        now: fx.now(),
        held_until: fx.now() + Duration::seconds(5),
    };
    match fx.ports.reservations.hold(&req).unwrap() {
        HoldOutcome::Held(r) => assert_eq!((r.id, r.held_until), (id, req.held_until)),
        other => panic!("expected a hold, got {other:?}"),
    }
    assert_eq!(fx.ports.reservations.find(ReservationId::random()).unwrap(), None);
}

/// A seat under an unexpired hold (even one microsecond before it lapses) or sold is taken,
/// for its holder too.
pub fn seat_is_taken_while_held_or_sold<H: Harness>() {
    let fx = Fixture::<H>::seeded();
    let users = fx.active_users(2);
    let (a, b) = (&users[0], &users[1]);
    let schedule = fx.schedule(0).id;
    let r = fx.hold(a, 0, 1);
    assert_eq!(fx.app.reserve(b, schedule, fx.seat(0, 1).id), Err(ReserveError::SeatUnavailable));
    assert_eq!(fx.app.reserve(a, schedule, fx.seat(0, 1).id), Err(ReserveError::SeatUnavailable));
    fx.clock.set(r.held_until - Duration::microseconds(1));
    assert_eq!(fx.app.reserve(b, schedule, fx.seat(0, 1).id), Err(ReserveError::SeatUnavailable));
    assert_eq!(fx.stored(r.id).status, ReservationStatus::Held);

    fx.charge(a.user_id(), 1_000_000);
    fx.app.pay(a, r.id).unwrap();
    fx.advance(Duration::days(1)); // long after the hold would have lapsed
    assert_eq!(fx.app.reserve(b, schedule, fx.seat(0, 1).id), Err(ReserveError::SeatUnavailable));
    assert_eq!(fx.stored(r.id).status, ReservationStatus::Paid);
}

/// `NoSuchSeat` for a seat of another schedule, an unknown seat, and a schedule that has
/// started (from its exact start).
pub fn no_such_seat_for_wrong_unknown_or_started_schedule<H: Harness>() {
    let fx = Fixture::<H>::seeded();
    let who = fx.active_user();
    let (s0, s1) = (fx.schedule(0).id, fx.schedule(1).id);
    assert_eq!(fx.app.reserve(&who, s1, fx.seat(0, 1).id), Err(ReserveError::NotFound));
    assert_eq!(fx.app.reserve(&who, s0, SeatId::random()), Err(ReserveError::NotFound));

    let start = fx.schedule(0).starts_at;
    let req = |now| HoldRequest {
        reservation_id: ReservationId::random(),
        user_id: who.user_id(),
        schedule_id: s0,
        seat_id: fx.seat(0, 2).id,
        now,
        held_until: now + Duration::seconds(300),
    };
    assert_eq!(fx.ports.reservations.hold(&req(start)).unwrap(), HoldOutcome::NoSuchSeat);
    assert_eq!(fx.ports.reservations.hold(&req(start + Duration::hours(1))).unwrap(), HoldOutcome::NoSuchSeat);
    assert!(matches!(
        fx.ports.reservations.hold(&req(start - Duration::microseconds(1))).unwrap(),
        HoldOutcome::Held(_)
    ));
    // Nothing was stored by the refused attempts: the seat map shows one claim only.
    let seats = fx.ports.catalogue.seats(s0).unwrap().unwrap();
    assert_eq!(seats.iter().filter(|s| s.claim.is_some()).count(), 1);
    let seats = fx.ports.catalogue.seats(s1).unwrap().unwrap();
    assert!(seats.iter().all(|s| s.claim.is_none()));
}

/// At the exact instant a hold lapses the seat can be held again, before any release; the
/// lapsed reservation is then stored EXPIRED.
pub fn seat_can_be_held_again_at_the_exact_lapse<H: Harness>() {
    let fx = Fixture::<H>::seeded();
    let users = fx.active_users(2);
    let (a, b) = (&users[0], &users[1]);
    let old = fx.hold(a, 2, 10);
    fx.clock.set(old.held_until);
    let new = fx.hold(b, 2, 10);
    assert_eq!(new.user_id, b.user_id());
    assert_eq!(new.held_until, old.held_until + Duration::seconds(300));
    assert_eq!(fx.stored(old.id).status, ReservationStatus::Expired);
    assert_eq!(fx.app.reservation(a, old.id).unwrap().status, ReservationStatus::Expired);
    // The release task has nothing left to do for the old hold.
    assert_eq!(fx.app.release_holds().unwrap(), 0);
    let seats = fx.ports.catalogue.seats(fx.schedule(2).id).unwrap().unwrap();
    let claim = seats.iter().find(|s| s.seat.number == 10).unwrap().claim.unwrap();
    assert_eq!(claim.reservation_id, new.id);
}

/// `release_lapsed` expires HELD reservations at exactly `held_until`, each once, and never a
/// paid one.
pub fn release_lapsed_changes_each_hold_once<H: Harness>() {
    let fx = Fixture::<H>::seeded();
    let who = fx.active_user();
    let a = fx.hold(&who, 0, 1);
    let b = fx.hold(&who, 0, 2);
    let paid = fx.hold(&who, 0, 3);
    fx.advance(Duration::seconds(10));
    let later = fx.hold(&who, 0, 4);
    fx.charge(who.user_id(), 1_000_000);
    fx.app.pay(&who, paid.id).unwrap();

    let lapse = a.held_until;
    assert_eq!(fx.ports.reservations.release_lapsed(lapse - Duration::microseconds(1)).unwrap(), 0);
    assert_eq!(fx.ports.reservations.release_lapsed(lapse).unwrap(), 2);
    assert_eq!(fx.ports.reservations.release_lapsed(lapse).unwrap(), 0);
    for id in [a.id, b.id] {
        assert_eq!(fx.stored(id).status, ReservationStatus::Expired);
    }
    assert_eq!(fx.stored(later.id).status, ReservationStatus::Held);
    assert_eq!(fx.ports.reservations.release_lapsed(later.held_until).unwrap(), 1);
    assert_eq!(fx.ports.reservations.release_lapsed(later.held_until + Duration::days(30)).unwrap(), 0);
    assert_eq!(fx.stored(paid.id).status, ReservationStatus::Paid);
}
