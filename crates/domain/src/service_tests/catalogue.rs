//! Step 4: the catalogue.

use super::*;

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
