//! The demo catalogue that `concert seed-demo` (and `--store memory`) loads, through the same
//! catalogue port an operator's `POST /admin/concerts` uses.
//!
//! Ids are derived from fixed numbers (the concert's index, a schedule's date) so that seeding
//! is idempotent and safe to run from several places at once: a second run finds the concerts
//! and the schedules it would add. Dates are relative to the run: every run makes sure each demo
//! concert has at least three future schedules (19:00 UTC, 7, 14 and 30 days ahead, then further
//! out if those are taken), so a demo database never runs out of bookable dates.

use domain::catalogue::{AddSchedule, Concert, NewConcert, NewSchedule, Seat};
use domain::ids::{ConcertId, ScheduleId, SeatId};
use domain::money::Won;
use domain::ports::{CatalogueStore, StoreError};
use time::{Date, Duration, OffsetDateTime, Time};
use uuid::Uuid;

/// Seats per demo schedule, numbered 1 to 50.
pub const SEATS_PER_SCHEDULE: u32 = 50;

/// Future schedules each demo concert keeps.
pub const FUTURE_SCHEDULES: usize = 3;

/// Days ahead the schedules are placed at, in order of preference.
const DAYS_AHEAD: [i64; 8] = [7, 14, 30, 45, 60, 90, 120, 180];

/// (title, artist, venue, base price in won).
const CONCERTS: [(&str, &str, &str, i64); 2] = [
    ("Stadium Tour 2027 — Seoul", "IU", "Seoul Olympic Stadium", 150_000),
    ("Winter Symphony", "Seoul Philharmonic", "Lotte Concert Hall", 80_000),
];

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

fn day_number(date: Date) -> u32 {
    u32::try_from(date.to_julian_day()).unwrap_or(0)
}

fn schedule(concert_index: u32, concert: ConcertId, base_price: i64, starts_at: OffsetDateTime) -> NewSchedule {
    // One id space per concert: the index in the high digits, the date in the low ones.
    let key = concert_index * 10_000_000 + day_number(starts_at.date());
    let id = ScheduleId::from_uuid(fixed_id(2, key, 0));
    let seats = (1..=SEATS_PER_SCHEDULE)
        .map(|number| Seat {
            id: SeatId::from_uuid(fixed_id(3, key, number)),
            schedule_id: id,
            number,
            // Front rows (1-10) cost double.
            price: Won::new(if number <= 10 { base_price * 2 } else { base_price }),
        })
        .collect();
    NewSchedule { id, concert_id: concert, starts_at, seats }
}

/// What a run of [`ensure`] added.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Seeded {
    /// Concerts created.
    pub concerts: usize,
    /// Schedules added (including those of new concerts).
    pub schedules: usize,
}

/// Creates the demo concerts that are missing and tops each up to [`FUTURE_SCHEDULES`] future
/// schedules as of `now`.
///
/// # Errors
/// [`StoreError`] when the store fails (what was added before stays).
pub fn ensure(catalogue: &dyn CatalogueStore, now: OffsetDateTime) -> Result<Seeded, StoreError> {
    let evening = Time::from_hms(19, 0, 0).unwrap_or(Time::MIDNIGHT);
    let existing = catalogue.concerts()?;
    let mut seeded = Seeded::default();
    for (index, (title, artist, venue, base_price)) in (0_u32..).zip(CONCERTS) {
        let id = ConcertId::from_uuid(fixed_id(1, index, 0));
        let dates = DAYS_AHEAD.iter().map(|d| (now + Duration::days(*d)).replace_time(evening));
        if !existing.iter().any(|c| c.id == id) {
            let schedules: Vec<NewSchedule> =
                dates.take(FUTURE_SCHEDULES).map(|at| schedule(index, id, base_price, at)).collect();
            let concert = Concert { id, title: title.into(), artist: artist.into(), venue: venue.into() };
            let count = schedules.len();
            if catalogue.create_concert(&NewConcert { concert, schedules }, None)? {
                seeded.concerts += 1;
                seeded.schedules += count;
            }
            continue;
        }
        let mut future = catalogue.schedules(id, now)?.map_or(0, |s| s.len());
        for at in dates {
            if future >= FUTURE_SCHEDULES {
                break;
            }
            match catalogue.add_schedule(&schedule(index, id, base_price, at), None)? {
                AddSchedule::Added => {
                    future += 1;
                    seeded.schedules += 1;
                }
                // Already there (and so already counted as future), or removed meanwhile.
                AddSchedule::AlreadyExists | AddSchedule::NoSuchConcert => {}
            }
        }
    }
    Ok(seeded)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, reason = "test code")]

    use std::collections::HashSet;
    use std::sync::Arc;

    use adapters_local::OsRandom;
    use adapters_memory::MemoryStore;
    use domain::clock::Clock as _;
    use domain::clock::ManualClock;

    use super::*;

    #[test]
    fn seeding_is_idempotent_and_keeps_three_future_schedules_as_time_passes() {
        let store = MemoryStore::new();
        let clock = ManualClock::at_epoch();
        let ports = store.ports(Arc::new(clock.clone()), Arc::new(OsRandom));
        let first = ensure(ports.catalogue.as_ref(), clock.now()).unwrap();
        assert_eq!(first, Seeded { concerts: 2, schedules: 6 });
        assert_eq!(ensure(ports.catalogue.as_ref(), clock.now()).unwrap(), Seeded::default());

        let concert = first_concert_id();
        let list = ports.catalogue.schedules(concert, clock.now()).unwrap().unwrap();
        assert_eq!(list.len(), 3);
        let mut ids = HashSet::new();
        for s in &list {
            let seats = ports.catalogue.seats(s.id).unwrap().unwrap();
            assert_eq!(seats.iter().map(|r| r.seat.number).collect::<Vec<_>>(), (1..=50).collect::<Vec<_>>());
            assert!(seats.iter().all(|r| r.seat.price.get() > 0 && ids.insert(r.seat.id)));
        }

        // Ten days later the first date has passed: a run tops the concert up again.
        clock.advance(Duration::days(10));
        assert_eq!(ports.catalogue.schedules(concert, clock.now()).unwrap().unwrap().len(), 2);
        assert_eq!(ensure(ports.catalogue.as_ref(), clock.now()).unwrap(), Seeded { concerts: 0, schedules: 2 });
        assert_eq!(ports.catalogue.schedules(concert, clock.now()).unwrap().unwrap().len(), 3);
    }
}
