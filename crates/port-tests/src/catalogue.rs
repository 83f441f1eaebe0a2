//! [`domain::ports::CatalogueStore`]: concerts, bookable schedules with seat counts, seat maps.

use domain::catalogue::SeatStatus;
use domain::demo::{first_concert_id, SEATS_PER_SCHEDULE};
use domain::ids::{ConcertId, ScheduleId};
use domain::reservation::ReservationStatus;
use time::Duration;

use crate::fixture::Fixture;
use crate::Harness;

/// Every concert, by title, as seeded.
pub fn concerts_are_listed_by_title<H: Harness>() {
    let fx = Fixture::<H>::seeded();
    let concerts = fx.ports.catalogue.concerts().unwrap();
    let mut expected = fx.demo.concerts.clone();
    expected.sort_by(|a, b| a.title.cmp(&b.title));
    assert_eq!(concerts, expected);
    let who = fx.active_user();
    assert_eq!(fx.app.concerts(&who).unwrap(), expected);
}

/// Only schedules starting after `now` are listed, soonest first, each with 50 seats.
pub fn schedules_are_future_only_ascending_with_counts<H: Harness>() {
    let fx = Fixture::<H>::seeded();
    let concert = first_concert_id();
    let mut expected: Vec<_> = fx.demo.schedules.iter().filter(|s| s.concert_id == concert).collect();
    expected.sort_by_key(|s| s.starts_at);

    let list = fx.ports.catalogue.schedules(concert, fx.now()).unwrap().unwrap();
    assert_eq!(list.iter().map(|s| s.id).collect::<Vec<_>>(), expected.iter().map(|s| s.id).collect::<Vec<_>>());
    for (s, e) in list.iter().zip(&expected) {
        assert_eq!((s.concert_id, s.starts_at), (concert, e.starts_at));
        assert_eq!((s.total_seats, s.available_seats), (SEATS_PER_SCHEDULE, SEATS_PER_SCHEDULE));
    }

    // At the first schedule's exact start it is no longer listed.
    let first_start = expected[0].starts_at;
    let list = fx.ports.catalogue.schedules(concert, first_start).unwrap().unwrap();
    assert_eq!(list.iter().map(|s| s.id).collect::<Vec<_>>(), expected[1..].iter().map(|s| s.id).collect::<Vec<_>>());
    let list = fx.ports.catalogue.schedules(concert, first_start - Duration::microseconds(1)).unwrap().unwrap();
    assert_eq!(list.len(), expected.len());
    // After every schedule: known concert, empty list.
    let after_all = expected[expected.len() - 1].starts_at + Duration::days(1);
    assert_eq!(fx.ports.catalogue.schedules(concert, after_all).unwrap(), Some(Vec::new()));
}

/// `available_seats` drops on a hold, comes back the instant the hold lapses (before any
/// release) and drops for good on a payment.
pub fn schedule_counts_follow_holds_payments_and_lapses<H: Harness>() {
    let fx = Fixture::<H>::seeded();
    let who = fx.active_user();
    let schedule = fx.schedule(0).id;
    let available = |at| {
        let list = fx.ports.catalogue.schedules(first_concert_id(), at).unwrap().unwrap();
        list.iter().find(|s| s.id == schedule).map(|s| (s.total_seats, s.available_seats)).unwrap()
    };
    let r1 = fx.hold(&who, 0, 1);
    let r2 = fx.hold(&who, 0, 2);
    assert_eq!(available(fx.now()), (50, 48));
    fx.charge(who.user_id(), 1_000_000);
    fx.app.pay(&who, r1.id).unwrap();
    assert_eq!(available(fx.now()), (50, 48));
    // r2 lapses exactly at held_until; the paid seat stays taken.
    assert_eq!(available(r2.held_until - Duration::microseconds(1)), (50, 48));
    assert_eq!(available(r2.held_until), (50, 49));
    fx.clock.set(r2.held_until);
    assert_eq!(fx.app.release_holds().unwrap(), 1);
    assert_eq!(available(fx.now()), (50, 49));
    // Other schedules are untouched.
    let other = fx.ports.catalogue.schedules(first_concert_id(), fx.now()).unwrap().unwrap();
    assert!(other.iter().filter(|s| s.id != schedule).all(|s| s.available_seats == 50));
}

/// A seat map lists every seat by number with its HELD or PAID reservation; an expired one is
/// not a claim.
pub fn seats_are_listed_by_number_with_their_claims<H: Harness>() {
    let fx = Fixture::<H>::seeded();
    let who = fx.active_user();
    let schedule = fx.schedule(1);
    let seats = fx.ports.catalogue.seats(schedule.id).unwrap().unwrap();
    assert_eq!(seats.iter().map(|s| s.seat.clone()).collect::<Vec<_>>(), schedule.seats);
    assert!(seats.iter().all(|s| s.claim.is_none()));

    let held = fx.hold(&who, 1, 3);
    let paid = fx.hold(&who, 1, 4);
    let lapsing = fx.hold(&who, 1, 5);
    fx.charge(who.user_id(), 10_000_000);
    fx.app.pay(&who, paid.id).unwrap();

    let claim_of = |n: u32| {
        let seats = fx.ports.catalogue.seats(schedule.id).unwrap().unwrap();
        seats.into_iter().find(|s| s.seat.number == n).unwrap().claim
    };
    let c = claim_of(3).unwrap();
    assert_eq!((c.reservation_id, c.status, c.held_until), (held.id, ReservationStatus::Held, held.held_until));
    let c = claim_of(4).unwrap();
    assert_eq!((c.reservation_id, c.status), (paid.id, ReservationStatus::Paid));
    assert!(claim_of(6).is_none());

    // The seat map reads a lapsed hold as AVAILABLE at once, and after release it is no claim.
    let observer = fx.active_user(); // may move the clock by one admission interval
    assert_eq!(fx.seat_status(&observer, 1, 5), SeatStatus::Held);
    fx.clock.set(lapsing.held_until);
    assert_eq!(
        fx.app.seats(&observer, schedule.id).unwrap().iter().filter(|s| s.status != SeatStatus::Available).count(),
        1
    );
    assert_eq!(fx.seat_status(&observer, 1, 4), SeatStatus::Sold);
    fx.app.release_holds().unwrap();
    assert!(claim_of(3).is_none());
    assert!(claim_of(5).is_none());
    assert_eq!(claim_of(4).map(|c| c.status), Some(ReservationStatus::Paid));
}

/// Unknown ids read as `None` (the use cases turn that into `NotFound`).
pub fn unknown_concert_and_schedule_are_none<H: Harness>() {
    let fx = Fixture::<H>::seeded();
    assert_eq!(fx.ports.catalogue.schedules(ConcertId::random(), fx.now()).unwrap(), None);
    assert_eq!(fx.ports.catalogue.seats(ScheduleId::random()).unwrap(), None);
    let who = fx.active_user();
    assert!(fx.app.schedules(&who, ConcertId::random()).is_err());
    assert!(fx.app.seats(&who, ScheduleId::random()).is_err());
}
