//! Concerts, their schedules and seats.

use serde::{Deserialize, Serialize};
use time::OffsetDateTime;

use crate::ids::{ConcertId, ReservationId, ScheduleId, SeatId};
use crate::money::Won;
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
    /// Whether seats of this schedule may still be reserved at `now`.
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

/// A seat's status on the seat map.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum SeatStatus {
    /// Free to reserve.
    Available,
    /// Under an unexpired hold.
    Held,
    /// Paid for.
    Sold,
}

impl SeatStatus {
    /// The contract's spelling.
    #[must_use]
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Available => "AVAILABLE",
            Self::Held => "HELD",
            Self::Sold => "SOLD",
        }
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
    /// The seat.
    pub seat: Seat,
    /// Its HELD or PAID reservation, if any (a lapsed HELD one may still be listed).
    pub claim: Option<SeatClaim>,
}

impl SeatRecord {
    /// The seat's status at `now`: SOLD if paid, HELD if under an unexpired hold, else
    /// AVAILABLE. A hold past its time is AVAILABLE at once, whether or not the release task
    /// has run.
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
    /// The seat.
    pub seat: Seat,
    /// Its status as of the read.
    pub status: SeatStatus,
}

#[cfg(test)]
mod tests {
    use super::*;
    use time::Duration;

    fn record(claim: Option<(ReservationStatus, OffsetDateTime)>) -> SeatRecord {
        SeatRecord {
            seat: Seat { id: SeatId::random(), schedule_id: ScheduleId::random(), number: 1, price: Won::new(1000) },
            claim: claim.map(|(status, held_until)| SeatClaim {
                reservation_id: ReservationId::random(),
                status,
                held_until,
            }),
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
            id: ScheduleId::random(),
            concert_id: ConcertId::random(),
            starts_at: now,
            total_seats: 1,
            available_seats: 1,
        };
        assert!(!s.is_bookable_at(now));
        assert!(s.is_bookable_at(now - Duration::seconds(1)));
    }
}
