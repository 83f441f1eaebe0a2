//! [`domain::ports::ReservationStore`]: holding seats (`Reservation::occupies_seat_at`,
//! `ScheduleSummary::is_bookable_at`), the hold limit (`may_hold_another`), lapses and their
//! batched release.

use domain::error::ReserveError;
use domain::ids::{ReservationId, SeatId};
use domain::reservation::{HoldOutcome, HoldRequest, ReservationStatus};
use domain::service::Policy;
use time::{Duration, OffsetDateTime};

use crate::fixture::Fixture;
use crate::fixture::World;
use crate::Harness;

impl World {
    /// A hold request for seat `number` of schedule `i` by `who`, at `now`, held 300 s.
    #[must_use]
    pub fn hold_request(
        &self,
        user: domain::ids::UserId,
        i: usize,
        number: u32,
        now: OffsetDateTime,
        max_live_holds: u32,
    ) -> HoldRequest {
        HoldRequest {
            reservation_id: ReservationId::from_uuid(self.ports.random.uuid()),
            user_id: user,
            schedule_id: self.schedule(i).id,
            seat_id: self.seat(i, number).id,
            now,
            held_until: now + Duration::seconds(300),
            max_live_holds,
        }
    }
}

/// A hold stores a HELD reservation with the seat's number and price, under the id it was
/// given.
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

    let req = HoldRequest {
        held_until: fx.now() + Duration::seconds(5),
        ..fx.hold_request(who.user_id(), 0, 8, fx.now(), 4)
    };
    match fx.ports.reservations.hold(&req).unwrap() {
        HoldOutcome::Held(r) => {
            assert_eq!((r.id, r.held_until, r.seat_number), (req.reservation_id, req.held_until, 8))
        }
        other => panic!("expected a hold, got {other:?}"),
    }
    assert_eq!(fx.ports.reservations.find(ReservationId::from_uuid(fx.ports.random.uuid())).unwrap(), None);
}

/// A seat under an unexpired hold (even one microsecond before it lapses) or sold is taken,
/// for its holder too.
pub fn seat_is_taken_while_held_or_sold<H: Harness>() {
    let fx = Fixture::<H>::seeded();
    let users = fx.active_users(2);
    let (a, b) = (&users[0], &users[1]);
    let schedule = fx.schedule(0).id;
    let seat = fx.seat(0, 1).id;
    let r = fx.hold(a, 0, 1);
    assert_eq!(fx.app.reserve(b, schedule, seat), Err(ReserveError::SeatUnavailable));
    assert_eq!(fx.app.reserve(a, schedule, seat), Err(ReserveError::SeatUnavailable));
    fx.clock.set(r.held_until - Duration::microseconds(1));
    assert_eq!(fx.app.reserve(b, schedule, seat), Err(ReserveError::SeatUnavailable));
    assert_eq!(fx.stored(r.id).status, ReservationStatus::Held);

    fx.charge(a.user_id(), 1_000_000);
    fx.pay(a, r.id).unwrap();
    // Long after the hold would have lapsed (store level: the token would be long gone).
    let later = fx.now() + Duration::days(1);
    let req = fx.hold_request(b.user_id(), 0, 1, later, 4);
    assert_eq!(fx.ports.reservations.hold(&req).unwrap(), HoldOutcome::SeatTaken);
    assert_eq!(fx.stored(r.id).status, ReservationStatus::Paid);
}

/// `NoSuchSeat` for a seat of another schedule, an unknown seat, and a schedule that has
/// started (from its exact start); nothing is stored by a refused hold.
pub fn no_such_seat_for_wrong_unknown_or_started_schedule<H: Harness>() {
    let fx = Fixture::<H>::seeded();
    let who = fx.active_user();
    let (s0, s1) = (fx.schedule(0).id, fx.schedule(1).id);
    assert_eq!(fx.app.reserve(&who, s1, fx.seat(0, 1).id), Err(ReserveError::NotFound));
    assert_eq!(fx.app.reserve(&who, s0, SeatId::from_uuid(fx.ports.random.uuid())), Err(ReserveError::NotFound));

    let start = fx.schedule(0).starts_at;
    let req = |now| fx.hold_request(who.user_id(), 0, 2, now, 4);
    assert_eq!(fx.ports.reservations.hold(&req(start)).unwrap(), HoldOutcome::NoSuchSeat);
    assert_eq!(fx.ports.reservations.hold(&req(start + Duration::hours(1))).unwrap(), HoldOutcome::NoSuchSeat);
    assert!(matches!(
        fx.ports.reservations.hold(&req(start - Duration::microseconds(1))).unwrap(),
        HoldOutcome::Held(_)
    ));
    // Nothing was stored by the refused attempts: the seat maps show one claim only.
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
    fx.pay(&who, paid.id).unwrap();

    let lapse = a.held_until;
    let release = |at| fx.ports.reservations.release_lapsed(at, 100).unwrap();
    assert_eq!(release(lapse - Duration::microseconds(1)), 0);
    assert_eq!(release(lapse), 2);
    assert_eq!(release(lapse), 0);
    for id in [a.id, b.id] {
        assert_eq!(fx.stored(id).status, ReservationStatus::Expired);
    }
    assert_eq!(fx.stored(later.id).status, ReservationStatus::Held);
    assert_eq!(release(later.held_until), 1);
    assert_eq!(release(later.held_until + Duration::days(30)), 0);
    assert_eq!(fx.stored(paid.id).status, ReservationStatus::Paid);
    let seats = fx.ports.catalogue.seats(fx.schedule(0).id).unwrap().unwrap();
    assert_eq!(seats.iter().filter(|s| s.claim.is_some()).count(), 1, "only the paid seat is claimed");
}

/// `release_lapsed(now, limit)` changes at most `limit` holds per call, and the use case runs
/// batches until one comes back short or the per-tick cap is reached.
pub fn release_lapsed_works_in_batches_of_the_limit<H: Harness>() {
    let mut fx = Fixture::<H>::seeded();
    let users = fx.active_users(3);
    let mut holds = Vec::new();
    for (i, who) in users.iter().enumerate() {
        for n in 1..=4 {
            holds.push(fx.hold(who, 0, u32::try_from(i).unwrap() * 4 + n));
        }
    }
    let lapse = fx.now() + Duration::seconds(300);
    let counts: Vec<u64> = (0..4).map(|_| fx.ports.reservations.release_lapsed(lapse, 5).unwrap()).collect();
    assert_eq!(counts, vec![5, 5, 2, 0]);
    assert!(holds.iter().all(|r| fx.stored(r.id).status == ReservationStatus::Expired));

    // Three more each, on seats 21-29 of another schedule.
    let mut more = Vec::new();
    for (who, first) in users.iter().zip([21, 24, 27]) {
        more.extend((first..first + 3).map(|n| fx.hold(who, 1, n)));
    }
    fx.clock.set(lapse);
    fx.set_policy(Policy { sweep_batch: 2, sweep_batches_per_tick: 3, ..Policy::default() });
    assert_eq!(fx.app.release_holds().unwrap(), 6, "three batches of two per tick");
    assert_eq!(fx.app.release_holds().unwrap(), 3, "two, then a short batch of one");
    assert_eq!(fx.app.release_holds().unwrap(), 0);
    assert!(more.iter().all(|r| fx.stored(r.id).status == ReservationStatus::Expired));
}

/// A user may have at most `max_live_holds` live holds: HELD and unexpired. A paid
/// reservation does not count, a lapsed hold stops counting at its exact `held_until` (before
/// any release), and other users are not affected.
pub fn the_hold_limit_counts_live_holds_only<H: Harness>() {
    let mut fx = Fixture::<H>::seeded();
    fx.set_policy(Policy { max_holds_per_user: 2, ..Policy::default() });
    let users = fx.active_users(2);
    let (who, other) = (&users[0], &users[1]);
    let t0 = fx.now();
    let h1 = fx.hold(who, 0, 1);
    let h2 = fx.hold(who, 0, 2);
    assert_eq!(fx.app.reserve(who, fx.schedule(0).id, fx.seat(0, 3).id), Err(ReserveError::HoldLimit { max: 2 }));
    let _ = fx.hold(other, 0, 3);
    assert_eq!(
        fx.ports.reservations.hold(&fx.hold_request(who.user_id(), 0, 4, fx.now(), 2)).unwrap(),
        HoldOutcome::HoldLimit
    );
    // The limit is the request's: a third is allowed under a limit of 3.
    fx.advance(Duration::seconds(10));
    let h3 = match fx.ports.reservations.hold(&fx.hold_request(who.user_id(), 0, 4, fx.now(), 3)).unwrap() {
        HoldOutcome::Held(r) => r,
        other => panic!("expected a hold, got {other:?}"),
    };
    assert_eq!(
        fx.ports.reservations.hold(&fx.hold_request(who.user_id(), 0, 5, fx.now(), 3)).unwrap(),
        HoldOutcome::HoldLimit
    );

    // Paying h1 leaves h2 and h3 live: still at the limit of 2.
    fx.charge(who.user_id(), 10_000_000);
    fx.pay(who, h1.id).unwrap();
    let who = fx.readmit(who.user_id());
    assert_eq!(fx.app.reserve(&who, fx.schedule(0).id, fx.seat(0, 5).id), Err(ReserveError::HoldLimit { max: 2 }));

    // One microsecond before h2 lapses it still counts; at its lapse it does not.
    fx.clock.set(h2.held_until - Duration::microseconds(1));
    assert_eq!(fx.app.reserve(&who, fx.schedule(0).id, fx.seat(0, 5).id), Err(ReserveError::HoldLimit { max: 2 }));
    fx.clock.set(h2.held_until);
    let h4 = fx.hold(&who, 0, 5);
    assert_eq!(fx.app.reserve(&who, fx.schedule(0).id, fx.seat(0, 6).id), Err(ReserveError::HoldLimit { max: 2 }));
    assert_eq!(fx.stored(h2.id).status, ReservationStatus::Held, "no release ran");
    assert_eq!(h3.held_until, t0 + Duration::seconds(310));
    assert_eq!(fx.stored(h4.id).user_id, who.user_id());
}
