//! Reservations: a hold on a seat that is paid (HELD -> PAID) or lapses (HELD -> EXPIRED).

use time::OffsetDateTime;

use crate::ids::{ReservationId, ScheduleId, SeatId, UserId};
use crate::money::Won;

spelled_enum! {
    /// A reservation's stored state, spelled as in the contract (`HELD`, ...) by `strum`.
    pub enum ReservationStatus {
        /// The seat is held until `held_until`.
        Held,
        /// Paid: the seat is sold. Final.
        Paid,
        /// The hold lapsed unpaid. Final.
        Expired,
    }
}

/// A reservation as stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reservation {
    /// Its id.
    pub id: ReservationId,
    /// Who holds it (the user of the token that made it).
    pub user_id: UserId,
    /// The schedule.
    pub schedule_id: ScheduleId,
    /// The seat.
    pub seat_id: SeatId,
    /// The seat's number, copied for display.
    pub seat_number: u32,
    /// The price, fixed when the hold was made.
    pub price: Won,
    /// Stored status; read it through [`Reservation::status_at`].
    pub status: ReservationStatus,
    /// When it was made.
    pub created_at: OffsetDateTime,
    /// When the hold lapses if unpaid.
    pub held_until: OffsetDateTime,
    /// When it was paid.
    pub paid_at: Option<OffsetDateTime>,
}

impl Reservation {
    /// The status as of `now`: a HELD reservation at or past `held_until` is EXPIRED at once.
    #[must_use]
    pub fn status_at(&self, now: OffsetDateTime) -> ReservationStatus {
        match self.status {
            ReservationStatus::Held if now >= self.held_until => ReservationStatus::Expired,
            status => status,
        }
    }

    /// Whether it still occupies its seat at `now` (PAID, or HELD and unexpired). This is the
    /// "live claim" rule: stores restate it in their uniqueness guard (PostgreSQL: the partial
    /// unique index on `HELD`/`PAID` plus the lapse check of the hold statement).
    #[must_use]
    pub fn occupies_seat_at(&self, now: OffsetDateTime) -> bool {
        self.status_at(now) != ReservationStatus::Expired
    }

    /// This reservation as it reads at `now` (status resolved).
    #[must_use]
    pub fn as_of(mut self, now: OffsetDateTime) -> Self {
        self.status = self.status_at(now);
        self
    }
}

/// Whether a user who has `live_holds` unexpired HELD reservations may make one more: fewer
/// than `max` (`MAX_HOLDS_PER_USER`). Stores count the live holds and apply this inside the
/// section that serialises one user's holds, so concurrent holds never pass it.
#[must_use]
pub const fn may_hold_another(live_holds: u32, max: u32) -> bool {
    live_holds < max
}

/// What a store needs to make a hold.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HoldRequest {
    /// Id for the new reservation.
    pub reservation_id: ReservationId,
    /// The holder.
    pub user_id: UserId,
    /// The schedule the seat must belong to.
    pub schedule_id: ScheduleId,
    /// The seat.
    pub seat_id: SeatId,
    /// Now. The schedule must start after it; claims lapsed by it do not block the seat.
    pub now: OffsetDateTime,
    /// When the new hold lapses.
    pub held_until: OffsetDateTime,
    /// Most live holds the user may have, this one included ([`may_hold_another`]).
    pub max_live_holds: u32,
}

/// The result of an attempt to hold a seat.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HoldOutcome {
    /// The seat is ours: the new HELD reservation.
    Held(Reservation),
    /// Another reservation occupies the seat (unexpired hold, or sold).
    SeatTaken,
    /// No such seat in that schedule, or the schedule has already started.
    NoSuchSeat,
    /// The user already has `max_live_holds` live holds.
    HoldLimit,
}

#[cfg(test)]
mod tests {
    use std::str::FromStr as _;

    use super::*;
    use crate::random::{Randomness as _, SeededRandom};
    use time::Duration;

    #[test]
    fn hold_lapses_at_its_exact_deadline() {
        let now = OffsetDateTime::from_unix_timestamp(1_893_456_000).unwrap();
        let random = SeededRandom::default();
        let r = Reservation {
            id: ReservationId::from_uuid(random.uuid()),
            user_id: UserId::from_uuid(random.uuid()),
            schedule_id: ScheduleId::from_uuid(random.uuid()),
            seat_id: SeatId::from_uuid(random.uuid()),
            seat_number: 1,
            price: Won::new(10),
            status: ReservationStatus::Held,
            created_at: now,
            held_until: now + Duration::seconds(300),
            paid_at: None,
        };
        assert_eq!(r.status_at(now + Duration::seconds(299)), ReservationStatus::Held);
        assert_eq!(r.status_at(now + Duration::seconds(300)), ReservationStatus::Expired);
        assert!(!r.occupies_seat_at(now + Duration::seconds(300)));
        let paid = Reservation { status: ReservationStatus::Paid, ..r };
        assert_eq!(paid.status_at(now + Duration::days(1)), ReservationStatus::Paid);
        assert_eq!(ReservationStatus::from_str("PAID"), Ok(ReservationStatus::Paid));
    }

    #[test]
    fn a_user_may_hold_up_to_the_maximum() {
        assert!(may_hold_another(3, 4));
        assert!(!may_hold_another(4, 4));
        assert!(!may_hold_another(0, 0));
    }
}
