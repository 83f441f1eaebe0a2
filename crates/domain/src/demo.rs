//! The demo catalogue that `concert seed-demo` (and `--store memory`) loads: pure data, so
//! every adapter seeds exactly the same thing.
//!
//! Ids are fixed (derived from the concert and schedule index) so that seeding is idempotent
//! and the README's walk-through can name them. Schedule times are relative to the seeding
//! instant so the demo always has future dates: 7, 14 and 30 days ahead at 19:00 UTC.

use time::{Duration, OffsetDateTime, Time};
use uuid::Uuid;

use crate::catalogue::{Concert, Seat};
use crate::ids::{ConcertId, ScheduleId, SeatId};
use crate::money::Won;

/// Seats per demo schedule.
pub const SEATS_PER_SCHEDULE: u32 = 50;

/// A schedule to seed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DemoSchedule {
    /// Its id.
    pub id: ScheduleId,
    /// Its concert.
    pub concert_id: ConcertId,
    /// When it starts.
    pub starts_at: OffsetDateTime,
    /// Its seats, numbered 1 to 50.
    pub seats: Vec<Seat>,
}

/// The whole demo catalogue.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DemoCatalogue {
    /// The concerts.
    pub concerts: Vec<Concert>,
    /// Their schedules with seats.
    pub schedules: Vec<DemoSchedule>,
}

fn fixed_id(kind: u8, a: u32, b: u32) -> Uuid {
    // Version 4 / variant 1 bits are set so the ids look like any other id on the wire.
    Uuid::from_u128(
        0x5eed_0000_0000_4000_8000_0000_0000_0000 | (u128::from(kind) << 88) | (u128::from(a) << 32) | u128::from(b),
    )
}

/// The demo concert's id (the first concert).
#[must_use]
pub fn first_concert_id() -> ConcertId {
    ConcertId::from_uuid(fixed_id(1, 0, 0))
}

/// The demo catalogue as of `now`.
#[must_use]
pub fn catalogue(now: OffsetDateTime) -> DemoCatalogue {
    let concerts_spec: [(&str, &str, &str, i64); 2] = [
        ("Stadium Tour 2027 — Seoul", "IU", "Seoul Olympic Stadium", 150_000),
        ("Winter Symphony", "Seoul Philharmonic", "Lotte Concert Hall", 80_000),
    ];
    let days_ahead = [7_i64, 14, 30];
    let evening = Time::from_hms(19, 0, 0).unwrap_or(Time::MIDNIGHT);
    let mut concerts = Vec::new();
    let mut schedules = Vec::new();
    for (ci, (title, artist, venue, base_price)) in (0_u32..).zip(concerts_spec) {
        let concert_id = ConcertId::from_uuid(fixed_id(1, ci, 0));
        concerts.push(Concert { id: concert_id, title: title.into(), artist: artist.into(), venue: venue.into() });
        for (si, days) in (0_u32..).zip(days_ahead) {
            let schedule_id = ScheduleId::from_uuid(fixed_id(2, ci, si));
            let starts_at = (now + Duration::days(days)).replace_time(evening);
            let seats = (1..=SEATS_PER_SCHEDULE)
                .map(|number| Seat {
                    id: SeatId::from_uuid(fixed_id(3, ci * 16 + si, number)),
                    schedule_id,
                    number,
                    // Front rows (1-10) cost double.
                    price: Won::new(if number <= 10 { base_price * 2 } else { base_price }),
                })
                .collect();
            schedules.push(DemoSchedule { id: schedule_id, concert_id, starts_at, seats });
        }
    }
    DemoCatalogue { concerts, schedules }
}

#[cfg(test)]
mod tests {
    use std::collections::HashSet;

    use super::*;

    #[test]
    fn demo_has_future_schedules_of_fifty_priced_seats_with_unique_ids() {
        let now = OffsetDateTime::from_unix_timestamp(1_893_456_000).unwrap();
        let demo = catalogue(now);
        assert!(!demo.concerts.is_empty());
        assert_eq!(demo.concerts[0].id, first_concert_id());
        let mut ids = HashSet::new();
        for s in &demo.schedules {
            assert!(s.starts_at > now);
            assert_eq!(s.seats.len(), 50);
            assert_eq!(s.seats.iter().map(|x| x.number).collect::<Vec<_>>(), (1..=50).collect::<Vec<_>>());
            assert!(s.seats.iter().all(|x| x.price.get() > 0 && x.schedule_id == s.id));
            assert!(ids.insert(s.id.as_uuid()));
            for seat in &s.seats {
                assert!(ids.insert(seat.id.as_uuid()), "duplicate seat id");
            }
        }
        assert!(demo.schedules.iter().filter(|s| s.concert_id == first_concert_id()).count() >= 3);
        assert_eq!(catalogue(now), demo, "deterministic for a given instant");
    }
}
