//! [`domain::ports::CatalogueStore`]: concerts, bookable schedules with seat counts, seat maps,
//! the operator's catalogue (all or nothing) and the sales report. Counts are compared with
//! the seat map the domain reads (`SeatRecord::status_at`), and listings with
//! `ScheduleSummary::is_bookable_at`, on both sides of each boundary.

use std::collections::HashMap;

use domain::catalogue::{AddSchedule, ConcertDraft, ScheduleDraft, SeatDraft, SeatStatus};
use domain::error::{
    AddScheduleError, CreateConcertError, ListSchedulesError, ListSeatsError, ReserveError, SalesError,
};
use domain::ids::{ConcertId, ReservationId, ScheduleId};
use domain::money::Won;
use domain::reservation::{HoldOutcome, HoldRequest, ReservationStatus};
use time::Duration;

use crate::fixture::{new_concert, new_schedule, Fixture, SEATS};
use crate::Harness;

/// Every concert, by title, as seeded.
pub fn concerts_are_listed_by_title<H: Harness>() {
    let fx = Fixture::<H>::seeded();
    let concerts = fx.ports.catalogue.concerts().unwrap();
    let mut expected = fx.catalogue.concerts.clone();
    expected.sort_by(|a, b| a.title.cmp(&b.title));
    assert_eq!(concerts, expected);
    assert_ne!(expected, fx.catalogue.concerts, "created in another order than by title");
    let who = fx.active_user();
    assert_eq!(fx.app.concerts(&who).unwrap(), expected);
}

/// Only schedules starting after `now` are listed, soonest first, each with 50 seats
/// available.
pub fn schedules_are_future_only_ascending_with_counts<H: Harness>() {
    let fx = Fixture::<H>::seeded();
    let concert = fx.concert(0).id;
    let expected: Vec<_> = fx.catalogue.schedules[..3].to_vec();

    let list = fx.ports.catalogue.schedules(concert, fx.now()).unwrap().unwrap();
    assert_eq!(list.iter().map(|s| s.id).collect::<Vec<_>>(), expected.iter().map(|s| s.id).collect::<Vec<_>>());
    for (s, e) in list.iter().zip(&expected) {
        assert_eq!((s.concert_id, s.starts_at), (concert, e.starts_at));
        assert_eq!((s.total_seats, s.available_seats), (SEATS, SEATS));
    }

    // At the first schedule's exact start it is no longer listed.
    let first_start = expected[0].starts_at;
    let list = fx.ports.catalogue.schedules(concert, first_start).unwrap().unwrap();
    assert_eq!(list.iter().map(|s| s.id).collect::<Vec<_>>(), expected[1..].iter().map(|s| s.id).collect::<Vec<_>>());
    let list = fx.ports.catalogue.schedules(concert, first_start - Duration::microseconds(1)).unwrap().unwrap();
    assert_eq!(list.len(), expected.len());
    assert!(list.iter().all(|s| s.is_bookable_at(first_start - Duration::microseconds(1))));
    // After every schedule: known concert, empty list.
    let after_all = expected[2].starts_at + Duration::days(1);
    assert_eq!(fx.ports.catalogue.schedules(concert, after_all).unwrap(), Some(Vec::new()));
}

/// `available_seats` drops on a hold, comes back the instant the hold lapses (before any
/// release) and drops for good on a payment.
pub fn schedule_counts_follow_holds_payments_and_lapses<H: Harness>() {
    let fx = Fixture::<H>::seeded();
    let who = fx.active_user();
    let concert = fx.concert(0).id;
    let schedule = fx.schedule(0).id;
    let available = |at| {
        let list = fx.ports.catalogue.schedules(concert, at).unwrap().unwrap();
        list.iter().find(|s| s.id == schedule).map(|s| (s.total_seats, s.available_seats)).unwrap()
    };
    let r1 = fx.hold(&who, 0, 1);
    let r2 = fx.hold(&who, 0, 2);
    assert_eq!(available(fx.now()), (50, 48));
    fx.charge(who.user_id(), 1_000_000);
    fx.pay(&who, r1.id).unwrap();
    assert_eq!(available(fx.now()), (50, 48));
    // r2 lapses exactly at held_until; the paid seat stays taken.
    assert_eq!(available(r2.held_until - Duration::microseconds(1)), (50, 48));
    assert_eq!(available(r2.held_until), (50, 49));
    fx.clock.set(r2.held_until);
    assert_eq!(fx.app.release_holds().unwrap(), 1);
    assert_eq!(available(fx.now()), (50, 49));
    // Other schedules are untouched.
    let other = fx.ports.catalogue.schedules(concert, fx.now()).unwrap().unwrap();
    assert!(other.iter().filter(|s| s.id != schedule).all(|s| s.available_seats == 50));
}

/// A seat map lists every seat by number with its HELD or PAID reservation; an expired one is
/// not a claim, and a lapsed hold reads AVAILABLE at once.
pub fn seats_are_listed_by_number_with_their_claims<H: Harness>() {
    let fx = Fixture::<H>::seeded();
    let who = fx.active_user();
    let schedule = fx.schedule(1).clone();
    let seats = fx.ports.catalogue.seats(schedule.id).unwrap().unwrap();
    assert_eq!(seats.iter().map(|s| s.seat.clone()).collect::<Vec<_>>(), schedule.seats);
    assert!(seats.iter().all(|s| s.claim.is_none()));

    let held = fx.hold(&who, 1, 3);
    let paid = fx.hold(&who, 1, 4);
    let lapsing = fx.hold(&who, 1, 5);
    fx.charge(who.user_id(), 10_000_000);
    fx.pay(&who, paid.id).unwrap();

    let claim_of = |n: u32| {
        let seats = fx.ports.catalogue.seats(schedule.id).unwrap().unwrap();
        seats.into_iter().find(|s| s.seat.number == n).unwrap().claim
    };
    let c = claim_of(3).unwrap();
    assert_eq!((c.reservation_id, c.status, c.held_until), (held.id, ReservationStatus::Held, held.held_until));
    let c = claim_of(4).unwrap();
    assert_eq!((c.reservation_id, c.status), (paid.id, ReservationStatus::Paid));
    assert!(claim_of(6).is_none());

    let observer = fx.active_user(); // may move the clock by one admission interval
    assert_eq!(fx.seat_status(&observer, 1, 5), SeatStatus::Held);
    fx.clock.set(lapsing.held_until);
    let statuses: Vec<SeatStatus> = fx.app.seats(&observer, schedule.id).unwrap().iter().map(|s| s.status).collect();
    assert_eq!(statuses.iter().filter(|s| **s != SeatStatus::Available).count(), 1);
    assert_eq!(fx.seat_status(&observer, 1, 4), SeatStatus::Sold);
    fx.app.release_holds().unwrap();
    assert!(claim_of(3).is_none());
    assert!(claim_of(5).is_none());
    assert_eq!(claim_of(4).map(|c| c.status), Some(ReservationStatus::Paid));
}

/// Unknown ids read as `None` (the use cases turn that into `NotFound`).
pub fn unknown_concert_and_schedule_are_none<H: Harness>() {
    let fx = Fixture::<H>::seeded();
    let concert = ConcertId::from_uuid(fx.ports.random.uuid());
    let schedule = ScheduleId::from_uuid(fx.ports.random.uuid());
    assert_eq!(fx.ports.catalogue.schedules(concert, fx.now()).unwrap(), None);
    assert_eq!(fx.ports.catalogue.seats(schedule).unwrap(), None);
    assert_eq!(fx.ports.catalogue.sales(concert, fx.now()).unwrap(), None);
    let who = fx.active_user();
    assert_eq!(fx.app.schedules(&who, concert), Err(ListSchedulesError::NotFound));
    assert_eq!(fx.app.seats(&who, schedule), Err(ListSeatsError::NotFound));
    assert_eq!(fx.app.sales(concert), Err(SalesError::NotFound));
}

/// A schedule that starts soon is listed and bookable until one microsecond before its start;
/// from its exact start it is neither (its seat map and sales stay readable).
pub fn a_schedule_stops_being_bookable_at_its_exact_start<H: Harness>() {
    let fx = Fixture::<H>::seeded();
    let concert = fx.concert(0).id;
    let start = fx.now() + Duration::minutes(5);
    let soon = new_schedule(fx.ports.random.as_ref(), concert, start, 10_000);
    assert_eq!(fx.ports.catalogue.add_schedule(&soon, None).unwrap(), AddSchedule::Added);
    let who = fx.active_user();

    let listed = fx.app.schedules(&who, concert).unwrap();
    assert_eq!(listed.first().map(|s| (s.id, s.starts_at)), Some((soon.id, start)), "soonest first");
    assert!(fx.app.reserve(&who, soon.id, soon.seats[0].id).is_ok());

    fx.clock.set(start - Duration::microseconds(1));
    assert_eq!(fx.app.schedules(&who, concert).unwrap()[0].id, soon.id);
    assert!(fx.app.reserve(&who, soon.id, soon.seats[1].id).is_ok());

    fx.clock.set(start);
    assert!(fx.app.schedules(&who, concert).unwrap().iter().all(|s| s.id != soon.id));
    assert_eq!(fx.app.reserve(&who, soon.id, soon.seats[2].id), Err(ReserveError::NotFound));
    let req = HoldRequest {
        reservation_id: ReservationId::from_uuid(fx.ports.random.uuid()),
        user_id: who.user_id(),
        schedule_id: soon.id,
        seat_id: soon.seats[3].id,
        now: start,
        held_until: start + Duration::seconds(300),
        max_live_holds: 10,
    };
    assert_eq!(fx.ports.reservations.hold(&req).unwrap(), HoldOutcome::NoSuchSeat);
    assert_eq!(fx.app.seats(&who, soon.id).unwrap().len(), soon.seats.len());
    let sales = fx.app.sales(concert).unwrap();
    let row = sales.iter().find(|s| s.schedule_id == soon.id).expect("past schedules are in the report");
    // The first hold (made 300 s before the start) lapsed at the start; the second holds.
    assert_eq!((row.held, row.available), (1, 49));
}

/// `create_concert` stores a concert with every schedule and seat, or nothing at all; a
/// concert id that exists already gives `false` and changes nothing.
pub fn create_concert_is_all_or_nothing_and_false_for_an_existing_id<H: Harness>() {
    let fx = Fixture::<H>::seeded();
    let random = fx.ports.random.clone();
    let before = fx.ports.catalogue.concerts().unwrap();

    // The same id again, with other data: refused, nothing of it stored.
    let mut again = new_concert(random.as_ref(), "Impostor", 1_000, fx.now());
    let existing = fx.concert(0).id;
    again.concert.id = existing;
    for s in &mut again.schedules {
        s.concert_id = existing;
    }
    assert!(!fx.ports.catalogue.create_concert(&again, None).unwrap());
    assert_eq!(fx.ports.catalogue.concerts().unwrap(), before);
    assert!(again.schedules.iter().all(|s| fx.ports.catalogue.seats(s.id).unwrap().is_none()));
    assert_eq!(fx.ports.catalogue.schedules(existing, fx.now()).unwrap().unwrap().len(), 3);

    // A schedule whose id is taken: the whole concert is refused, its other schedules too.
    let mut clash = new_concert(random.as_ref(), "Clash", 1_000, fx.now());
    clash.schedules[1].id = fx.schedule(0).id;
    for seat in &mut clash.schedules[1].seats {
        seat.schedule_id = fx.schedule(0).id;
    }
    assert!(!matches!(fx.ports.catalogue.create_concert(&clash, None), Ok(true)));
    assert_eq!(fx.ports.catalogue.schedules(clash.concert.id, fx.now()).unwrap(), None);
    assert_eq!(fx.ports.catalogue.seats(clash.schedules[0].id).unwrap(), None);
    let seats = fx.ports.catalogue.seats(fx.schedule(0).id).unwrap().unwrap();
    assert_eq!(seats.into_iter().map(|r| r.seat).collect::<Vec<_>>(), fx.schedule(0).seats, "untouched");

    // A seat whose id is taken, in the last schedule: nothing of the concert is stored.
    let mut clash = new_concert(random.as_ref(), "Seat clash", 1_000, fx.now());
    clash.schedules[2].seats[49].id = fx.seat(1, 7).id;
    assert!(!matches!(fx.ports.catalogue.create_concert(&clash, None), Ok(true)));
    assert_eq!(fx.ports.catalogue.schedules(clash.concert.id, fx.now()).unwrap(), None);
    assert!(clash.schedules.iter().all(|s| fx.ports.catalogue.seats(s.id).unwrap().is_none()));
    assert_eq!(fx.ports.catalogue.concerts().unwrap(), before);

    // And a good one afterwards is stored whole.
    let good = new_concert(random.as_ref(), "Good", 1_000, fx.now());
    assert!(fx.ports.catalogue.create_concert(&good, None).unwrap());
    assert_eq!(fx.ports.catalogue.concerts().unwrap().len(), before.len() + 1);
    assert_eq!(fx.ports.catalogue.schedules(good.concert.id, fx.now()).unwrap().unwrap().len(), 3);
}

/// The operator's use case stores exactly what it validated: the concert, each schedule with
/// its seats (sorted by number, with their prices); an invalid draft stores nothing.
pub fn an_operators_concert_is_stored_as_validated<H: Harness>() {
    let fx = Fixture::<H>::seeded();
    let draft = ConcertDraft {
        title: "Autumn Gala".into(),
        artist: "The Band".into(),
        venue: "Hall".into(),
        schedules: vec![
            ScheduleDraft {
                starts_at: fx.now() + Duration::days(3),
                seats: vec![SeatDraft { number: 2, price: 20_000 }, SeatDraft { number: 1, price: 10_000 }],
            },
            ScheduleDraft { starts_at: fx.now() + Duration::days(2), seats: vec![SeatDraft { number: 5, price: 7 }] },
        ],
    };
    let created = fx.app.create_concert("suite", &draft).unwrap();
    assert!(fx.ports.catalogue.concerts().unwrap().contains(&created.concert));
    let who = fx.active_user();
    let listed = fx.app.schedules(&who, created.concert.id).unwrap();
    let ids: Vec<ScheduleId> = listed.iter().map(|s| s.id).collect();
    assert_eq!(ids, vec![created.schedules[1].id, created.schedules[0].id], "soonest first");
    assert_eq!(listed.iter().map(|s| (s.total_seats, s.available_seats)).collect::<Vec<_>>(), vec![(1, 1), (2, 2)]);
    let seats = fx.app.seats(&who, created.schedules[0].id).unwrap();
    let got: Vec<(u32, Won)> = seats.iter().map(|s| (s.seat.number, s.seat.price)).collect();
    assert_eq!(got, vec![(1, Won::new(10_000)), (2, Won::new(20_000))]);
    assert_eq!(seats.iter().map(|s| s.seat.clone()).collect::<Vec<_>>(), created.schedules[0].seats);

    let empty =
        ConcertDraft { title: "No dates yet".into(), artist: String::new(), venue: String::new(), schedules: vec![] };
    let created = fx.app.create_concert("suite", &empty).unwrap();
    assert_eq!(fx.app.schedules(&who, created.concert.id).unwrap(), Vec::new());
    assert_eq!(fx.app.sales(created.concert.id).unwrap(), Vec::new());

    let count = fx.ports.catalogue.concerts().unwrap().len();
    let invalid = ConcertDraft {
        schedules: vec![ScheduleDraft { starts_at: fx.now(), seats: vec![SeatDraft { number: 1, price: 1 }] }],
        ..empty
    };
    assert!(matches!(fx.app.create_concert("suite", &invalid), Err(CreateConcertError::Invalid(_))));
    assert_eq!(fx.ports.catalogue.concerts().unwrap().len(), count);
}

/// `add_schedule` adds a schedule with its seats to a known concert; a taken schedule id is
/// `AlreadyExists` and an unknown concert `NoSuchConcert`, both changing nothing.
pub fn add_schedule_adds_or_says_why_not<H: Harness>() {
    let fx = Fixture::<H>::seeded();
    let random = fx.ports.random.clone();
    let concert = fx.concert(1).id;
    let schedule = new_schedule(random.as_ref(), concert, fx.now() + Duration::days(60), 5_000);
    assert_eq!(fx.ports.catalogue.add_schedule(&schedule, None).unwrap(), AddSchedule::Added);
    let list = fx.ports.catalogue.schedules(concert, fx.now()).unwrap().unwrap();
    assert_eq!(list.last().map(|s| (s.id, s.total_seats, s.available_seats)), Some((schedule.id, SEATS, SEATS)));
    let seats = fx.ports.catalogue.seats(schedule.id).unwrap().unwrap();
    assert_eq!(seats.into_iter().map(|r| r.seat).collect::<Vec<_>>(), schedule.seats);

    // The same id again, with other seats: nothing changes.
    let mut again = new_schedule(random.as_ref(), concert, fx.now() + Duration::days(61), 9_000);
    again.id = schedule.id;
    for seat in &mut again.seats {
        seat.schedule_id = schedule.id;
    }
    assert_eq!(fx.ports.catalogue.add_schedule(&again, None).unwrap(), AddSchedule::AlreadyExists);
    let seats = fx.ports.catalogue.seats(schedule.id).unwrap().unwrap();
    assert_eq!(seats.into_iter().map(|r| r.seat).collect::<Vec<_>>(), schedule.seats);
    assert_eq!(fx.ports.catalogue.schedules(concert, fx.now()).unwrap().unwrap().len(), 4);

    let unknown = ConcertId::from_uuid(random.uuid());
    let orphan = new_schedule(random.as_ref(), unknown, fx.now() + Duration::days(5), 5_000);
    assert_eq!(fx.ports.catalogue.add_schedule(&orphan, None).unwrap(), AddSchedule::NoSuchConcert);
    assert_eq!(fx.ports.catalogue.seats(orphan.id).unwrap(), None);

    let draft =
        ScheduleDraft { starts_at: fx.now() + Duration::days(9), seats: vec![SeatDraft { number: 1, price: 5 }] };
    assert_eq!(fx.app.add_schedule("suite", unknown, &draft), Err(AddScheduleError::NotFound));
    let added = fx.app.add_schedule("suite", concert, &draft).unwrap();
    assert_eq!(fx.ports.catalogue.seats(added.id).unwrap().map(|s| s.len()), Some(1));
}

/// The sales report counts, per schedule (past ones included, soonest first), exactly the
/// statuses the seat map shows at the same instant, and its revenue is the sum of the payments.
pub fn sales_match_the_seat_map_and_the_payments<H: Harness>() {
    let fx = Fixture::<H>::seeded();
    let concert = fx.concert(0).id;
    let users = fx.active_users(3);
    let (a, b, c) = (&users[0], &users[1], &users[2]);
    for u in &users {
        fx.charge(u.user_id(), 10_000_000);
    }
    let lapsing = fx.hold(c, 0, 4);
    fx.advance(Duration::seconds(200));
    let a1 = fx.hold(a, 0, 1);
    let _a2 = fx.hold(a, 0, 2);
    let b1 = fx.hold(b, 1, 10);
    let _b2 = fx.hold(b, 0, 3);
    let mut revenue: HashMap<ScheduleId, i64> = HashMap::new();
    for (who, r) in [(a, &a1), (b, &b1)] {
        let p = fx.pay(who, r.id).unwrap();
        *revenue.entry(r.schedule_id).or_default() += p.amount.get();
    }
    fx.clock.set(lapsing.held_until);

    let check = |at| {
        let sales = fx.ports.catalogue.sales(concert, at).unwrap().unwrap();
        let ids: Vec<ScheduleId> = sales.iter().map(|s| s.schedule_id).collect();
        assert_eq!(ids, fx.catalogue.schedules[..3].iter().map(|s| s.id).collect::<Vec<_>>());
        for s in &sales {
            let map = fx.ports.catalogue.seats(s.schedule_id).unwrap().unwrap();
            let count = |st| u32::try_from(map.iter().filter(|r| r.status_at(at) == st).count()).unwrap();
            assert_eq!(
                (s.sold, s.held, s.available),
                (count(SeatStatus::Sold), count(SeatStatus::Held), count(SeatStatus::Available))
            );
            assert_eq!((s.total_seats, s.sold + s.held + s.available), (SEATS, SEATS));
            assert_eq!(s.revenue.get(), revenue.get(&s.schedule_id).copied().unwrap_or(0));
            let start = fx.catalogue.schedules.iter().find(|x| x.id == s.schedule_id).unwrap().starts_at;
            assert_eq!(s.starts_at, start);
        }
        sales
    };
    let now = check(fx.now());
    assert_eq!((now[0].sold, now[0].held, now[0].available), (1, 2, 47), "the lapsed hold is available");
    assert_eq!((now[1].sold, now[1].held), (1, 0));
    assert_eq!(now[0].revenue, a1.price);
    // After the first schedule started, and every hold lapsed: still reported.
    let later = check(fx.schedule(0).starts_at + Duration::hours(1));
    assert_eq!((later[0].sold, later[0].held), (1, 0));
    assert_eq!(fx.app.sales(concert).unwrap(), check(fx.now()));
    // The other concert sold nothing.
    let other = fx.ports.catalogue.sales(fx.concert(1).id, fx.now()).unwrap().unwrap();
    assert!(other.iter().all(|s| s.available == SEATS && s.revenue == Won::ZERO));
}
