//! Step 5: holds.

use super::*;

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
