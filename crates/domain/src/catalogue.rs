//! Concerts, their schedules and seats; the catalogue an operator creates, and its sales.

use std::collections::HashSet;

use thiserror::Error;
use time::OffsetDateTime;

use crate::ids::{ConcertId, ReservationId, ScheduleId, SeatId};
use crate::money::Won;
use crate::random::Randomness;
use crate::reservation::{Reservation, ReservationStatus};

/// A concert.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Concert {
    /// Its id.
    pub id: ConcertId,
    /// Its title.
    pub title: String,
    /// Who performs.
    pub artist: String,
    /// Where it plays.
    pub venue: String,
}

/// One performance of a concert, with its seat counts as of the read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ScheduleSummary {
    /// The schedule id.
    pub id: ScheduleId,
    /// Its concert.
    pub concert_id: ConcertId,
    /// When it starts; bookable only before then.
    pub starts_at: OffsetDateTime,
    /// Number of seats.
    pub total_seats: u32,
    /// Seats neither sold nor under an unexpired hold.
    pub available_seats: u32,
}

impl ScheduleSummary {
    /// Whether seats of this schedule may still be reserved at `now`. Stores filter listings
    /// and holds by this rule in their own query language; the conformance suite pins both
    /// sides of the boundary.
    #[must_use]
    pub fn is_bookable_at(&self, now: OffsetDateTime) -> bool {
        self.starts_at > now
    }
}

/// A seat as stored (no status: that is derived from its reservations).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Seat {
    /// The seat id.
    pub id: SeatId,
    /// The schedule it belongs to.
    pub schedule_id: ScheduleId,
    /// Its number, 1-based.
    pub number: u32,
    /// Its price.
    pub price: Won,
}

spelled_enum! {
    /// A seat's status on the seat map.
    pub enum SeatStatus {
        /// Free to reserve.
        Available,
        /// Under an unexpired hold.
        Held,
        /// Paid for.
        Sold,
    }
}

/// The reservation (if any) that occupies a seat, as far as the seat map needs to know.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SeatClaim {
    /// The reservation.
    pub reservation_id: ReservationId,
    /// Its stored status (HELD or PAID; EXPIRED claims are not returned by stores).
    pub status: ReservationStatus,
    /// When a HELD claim lapses.
    pub held_until: OffsetDateTime,
}

impl SeatClaim {
    /// The claim of a reservation.
    #[must_use]
    pub fn of(r: &Reservation) -> Self {
        Self { reservation_id: r.id, status: r.status, held_until: r.held_until }
    }
}

/// A seat with the claim on it, as read from a store.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SeatRecord {
    pub seat: Seat,
    /// Its HELD or PAID reservation, if any (a lapsed HELD one may still be listed).
    pub claim: Option<SeatClaim>,
}

impl SeatRecord {
    /// The seat's status at `now`: SOLD if paid, HELD if under an unexpired hold, else
    /// AVAILABLE. A hold past its time is AVAILABLE at once, whether or not the release task
    /// has run. Stores restate this rule where they count seats in their own language
    /// (available seats per schedule, the sales report), and the conformance suite checks the
    /// counts against the seat map.
    #[must_use]
    pub fn status_at(&self, now: OffsetDateTime) -> SeatStatus {
        match self.claim {
            Some(SeatClaim { status: ReservationStatus::Paid, .. }) => SeatStatus::Sold,
            Some(SeatClaim { status: ReservationStatus::Held, held_until, .. }) if held_until > now => SeatStatus::Held,
            _ => SeatStatus::Available,
        }
    }
}

/// What the seat map shows of one seat.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SeatView {
    pub seat: Seat,
    /// Its status as of the read.
    pub status: SeatStatus,
}

/// Bounds of a catalogue an operator creates (contract, "Operator API").
pub mod limits {
    /// Characters in a title (and in an artist or venue name).
    pub const NAME_CHARS: std::ops::RangeInclusive<usize> = 1..=200;
    /// Schedules in one `POST /admin/concerts`.
    pub const SCHEDULES_PER_CONCERT: usize = 20;
    /// Seats of one schedule.
    pub const SEATS_PER_SCHEDULE: std::ops::RangeInclusive<usize> = 1..=5_000;
    /// Seats in one request, all schedules together.
    pub const SEATS_PER_REQUEST: usize = 50_000;
    /// A seat's price in won.
    pub const PRICE: std::ops::RangeInclusive<i64> = 1..=100_000_000;
    /// A seat's number (no venue has a million seats; storage keeps 32-bit numbers).
    pub const SEAT_NUMBER: std::ops::RangeInclusive<u32> = 1..=1_000_000;
}

/// A seat as an operator describes it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SeatDraft {
    /// Its number, `>= 1`, unique in the schedule.
    pub number: i64,
    /// Its price in won, within [`limits::PRICE`].
    pub price: i64,
}

/// A schedule as an operator describes it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ScheduleDraft {
    /// When it starts: must be in the future.
    pub starts_at: OffsetDateTime,
    /// Its seats.
    pub seats: Vec<SeatDraft>,
}

/// A concert as an operator describes it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConcertDraft {
    /// Its title.
    pub title: String,
    /// Who performs (empty when not given).
    pub artist: String,
    /// Where (empty when not given).
    pub venue: String,
    /// Its schedules (possibly none yet).
    pub schedules: Vec<ScheduleDraft>,
}

/// A schedule ready to store: ids assigned, every rule checked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewSchedule {
    /// Its id.
    pub id: ScheduleId,
    /// Its concert.
    pub concert_id: ConcertId,
    /// When it starts.
    pub starts_at: OffsetDateTime,
    /// Its seats, by number.
    pub seats: Vec<Seat>,
}

/// A concert ready to store, with its schedules: stores write it all or nothing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewConcert {
    pub concert: Concert,
    /// Its schedules.
    pub schedules: Vec<NewSchedule>,
}

/// Why a draft cannot be stored; the text says which rule and where.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[error("{0}")]
pub struct InvalidCatalogue(pub String);

fn invalid(msg: impl Into<String>) -> InvalidCatalogue {
    InvalidCatalogue(msg.into())
}

/// A name shown to buyers: 1 to 200 characters (0 when not `required`), none of them a
/// control character (a NUL cannot even be stored in PostgreSQL's text; the others only break
/// pages and logs).
pub fn check_name(what: &str, value: &str, required: bool) -> Result<String, InvalidCatalogue> {
    let chars = value.chars().count();
    if !((!required && chars == 0) || limits::NAME_CHARS.contains(&chars)) {
        return Err(invalid(format!("{what} must have 1 to {} characters", limits::NAME_CHARS.end())));
    }
    if value.chars().any(char::is_control) {
        return Err(invalid(format!("{what} must not contain control characters")));
    }
    Ok(value.to_owned())
}

impl ScheduleDraft {
    /// Checks the rules and assigns ids.
    ///
    /// # Errors
    /// [`InvalidCatalogue`] when the start is not in the future, there are no seats or too
    /// many, a number is below 1 or repeated, or a price is out of bounds.
    pub fn validate(
        &self,
        concert_id: ConcertId,
        now: OffsetDateTime,
        random: &dyn Randomness,
    ) -> Result<NewSchedule, InvalidCatalogue> {
        if self.starts_at <= now {
            return Err(invalid("startsAt must be in the future"));
        }
        if !limits::SEATS_PER_SCHEDULE.contains(&self.seats.len()) {
            return Err(invalid(format!("a schedule needs 1 to {} seats", limits::SEATS_PER_SCHEDULE.end())));
        }
        let id = ScheduleId::from_uuid(random.uuid());
        let mut numbers = HashSet::with_capacity(self.seats.len());
        let mut seats = Vec::with_capacity(self.seats.len());
        for draft in &self.seats {
            let number =
                u32::try_from(draft.number).ok().filter(|n| limits::SEAT_NUMBER.contains(n)).ok_or_else(|| {
                    invalid(format!(
                        "seat number {} must be an integer from 1 to {}",
                        draft.number,
                        limits::SEAT_NUMBER.end()
                    ))
                })?;
            if !numbers.insert(number) {
                return Err(invalid(format!("seat number {number} appears twice in one schedule")));
            }
            if !limits::PRICE.contains(&draft.price) {
                return Err(invalid(format!(
                    "the price of seat {number} must be between {} and {} won",
                    limits::PRICE.start(),
                    limits::PRICE.end()
                )));
            }
            seats.push(Seat {
                id: SeatId::from_uuid(random.uuid()),
                schedule_id: id,
                number,
                price: Won::new(draft.price),
            });
        }
        seats.sort_by_key(|s| s.number);
        Ok(NewSchedule { id, concert_id, starts_at: self.starts_at, seats })
    }
}

impl ConcertDraft {
    /// Checks every rule of the concert and its schedules and assigns ids.
    ///
    /// # Errors
    /// [`InvalidCatalogue`] for the first rule broken (title, counts, any schedule's rules).
    pub fn validate(&self, now: OffsetDateTime, random: &dyn Randomness) -> Result<NewConcert, InvalidCatalogue> {
        let title = check_name("title", &self.title, true)?;
        let artist = check_name("artist", &self.artist, false)?;
        let venue = check_name("venue", &self.venue, false)?;
        if self.schedules.len() > limits::SCHEDULES_PER_CONCERT {
            return Err(invalid(format!("at most {} schedules per request", limits::SCHEDULES_PER_CONCERT)));
        }
        let total: usize = self.schedules.iter().map(|s| s.seats.len()).sum();
        if total > limits::SEATS_PER_REQUEST {
            return Err(invalid(format!("at most {} seats per request", limits::SEATS_PER_REQUEST)));
        }
        let id = ConcertId::from_uuid(random.uuid());
        let schedules = self
            .schedules
            .iter()
            .enumerate()
            .map(|(i, s)| s.validate(id, now, random).map_err(|e| invalid(format!("schedules[{i}]: {e}"))))
            .collect::<Result<Vec<_>, _>>()?;
        Ok(NewConcert { concert: Concert { id, title, artist, venue }, schedules })
    }
}

/// What [`crate::ports::CatalogueStore::add_schedule`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AddSchedule {
    /// Stored.
    Added,
    /// A schedule with this id exists already; nothing changed.
    AlreadyExists,
    /// The concert is unknown; nothing changed.
    NoSuchConcert,
}

/// One schedule's sales as of a read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ScheduleSales {
    /// The schedule.
    pub schedule_id: ScheduleId,
    /// When it starts.
    pub starts_at: OffsetDateTime,
    /// Its seats.
    pub total_seats: u32,
    /// Seats with a PAID reservation.
    pub sold: u32,
    /// Seats under an unexpired hold.
    pub held: u32,
    /// The rest.
    pub available: u32,
    /// The sum of the prices paid.
    pub revenue: Won,
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::random::SeededRandom;
    use time::Duration;

    fn id() -> uuid::Uuid {
        SeededRandom::default().uuid()
    }

    fn record(claim: Option<(ReservationStatus, OffsetDateTime)>) -> SeatRecord {
        SeatRecord {
            seat: Seat {
                id: SeatId::from_uuid(id()),
                schedule_id: ScheduleId::from_uuid(id()),
                number: 1,
                price: Won::new(1000),
            },
            claim: claim.map(|(status, held_until)| SeatClaim {
                reservation_id: ReservationId::from_uuid(id()),
                status,
                held_until,
            }),
        }
    }

    #[test]
    fn names_have_no_control_characters() {
        assert!(check_name("title", "Midsummer Night", true).is_ok());
        assert!(check_name("title", "한여름 밤의 꿈 — 2027", true).is_ok());
        for bad in ["a\u{0}b", "tab\there", "line\nbreak", "\u{9a}", "\u{1a}"] {
            let e = check_name("title", bad, true).unwrap_err();
            assert!(e.0.contains("control characters"), "{bad:?}: {e}");
        }
    }

    #[test]
    fn seat_status_is_derived_from_its_claim() {
        let now = OffsetDateTime::from_unix_timestamp(1_893_456_000).unwrap();
        assert_eq!(record(None).status_at(now), SeatStatus::Available);
        assert_eq!(
            record(Some((ReservationStatus::Held, now + Duration::seconds(1)))).status_at(now),
            SeatStatus::Held
        );
        // A hold is over at its exact `held_until`.
        assert_eq!(record(Some((ReservationStatus::Held, now))).status_at(now), SeatStatus::Available);
        assert_eq!(record(Some((ReservationStatus::Paid, now - Duration::hours(1)))).status_at(now), SeatStatus::Sold);
        assert_eq!(
            record(Some((ReservationStatus::Expired, now + Duration::hours(1)))).status_at(now),
            SeatStatus::Available
        );
    }

    #[test]
    fn schedule_is_bookable_only_before_it_starts() {
        let now = OffsetDateTime::from_unix_timestamp(1_893_456_000).unwrap();
        let s = ScheduleSummary {
            id: ScheduleId::from_uuid(id()),
            concert_id: ConcertId::from_uuid(id()),
            starts_at: now,
            total_seats: 1,
            available_seats: 1,
        };
        assert!(!s.is_bookable_at(now));
        assert!(s.is_bookable_at(now - Duration::seconds(1)));
    }

    fn draft(seats: Vec<SeatDraft>) -> ScheduleDraft {
        ScheduleDraft { starts_at: now() + Duration::days(1), seats }
    }

    fn now() -> OffsetDateTime {
        OffsetDateTime::from_unix_timestamp(1_893_456_000).unwrap()
    }

    fn seat(number: i64, price: i64) -> SeatDraft {
        SeatDraft { number, price }
    }

    fn concert(schedules: Vec<ScheduleDraft>) -> ConcertDraft {
        ConcertDraft { title: "T".into(), artist: String::new(), venue: String::new(), schedules }
    }

    #[test]
    fn a_valid_draft_gets_ids_and_seats_sorted_by_number() {
        let random = SeededRandom::default();
        let c = concert(vec![draft(vec![seat(2, 10), seat(1, 20)])]).validate(now(), &random).unwrap();
        let s = &c.schedules[0];
        assert_eq!(s.concert_id, c.concert.id);
        assert_eq!(s.seats.iter().map(|x| x.number).collect::<Vec<_>>(), vec![1, 2]);
        assert!(s.seats.iter().all(|x| x.schedule_id == s.id));
        assert_eq!(s.seats[0].price, Won::new(20));
    }

    #[test]
    fn every_catalogue_rule_is_checked() {
        let random = SeededRandom::default();
        let bad = |c: ConcertDraft| c.validate(now(), &random).unwrap_err().0;
        assert!(bad(ConcertDraft { title: String::new(), ..concert(vec![]) }).contains("title"));
        assert!(bad(ConcertDraft { title: "x".repeat(201), ..concert(vec![]) }).contains("title"));
        assert!(bad(concert(vec![ScheduleDraft { starts_at: now(), seats: vec![seat(1, 1)] }])).contains("future"));
        assert!(bad(concert(vec![draft(vec![])])).contains("1 to 5000 seats"));
        assert!(bad(concert(vec![draft(vec![seat(0, 1)])])).contains("from 1 to"));
        assert!(bad(concert(vec![draft(vec![seat(1_000_001, 1)])])).contains("from 1 to"));
        assert!(bad(concert(vec![draft(vec![seat(1, 1), seat(1, 2)])])).contains("twice"));
        assert!(bad(concert(vec![draft(vec![seat(1, 0)])])).contains("price"));
        assert!(bad(concert(vec![draft(vec![seat(1, 100_000_001)])])).contains("price"));
        assert!(bad(concert(vec![draft(vec![seat(1, 1)]); 21])).contains("20 schedules"));
        let many: Vec<SeatDraft> = (1..=5_000).map(|n| seat(n, 1)).collect();
        assert!(bad(concert(vec![draft(many); 11])).contains("50000 seats"));
        assert!(concert(vec![]).validate(now(), &random).is_ok(), "a concert may start with no schedule");
    }
}
