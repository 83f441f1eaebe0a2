//! Seat holds: one conditional INSERT on the partial unique index of live claims, so no seat
//! can ever have two, whatever the number of threads and instances.

use diesel::prelude::*;
use diesel::sql_types::{Bool, Timestamptz, Uuid as SqlUuid};
use domain::ids::{ReservationId, ScheduleId, SeatId, UserId};
use domain::money::Won;
use domain::ports::{ReservationStore, StoreError};
use domain::reservation::{HoldOutcome, HoldRequest, Reservation, ReservationStatus};
use time::OffsetDateTime;
use uuid::Uuid;

use crate::error::corrupt;
use crate::schema::reservations;
use crate::sql::prepared;
use crate::PgStore;

/// The columns of [`ReservationRow`], for `concat!` into `&'static str` statements (see `sql`).
macro_rules! reservation_columns {
    () => {
        "id, user_id, schedule_id, seat_id, seat_number, price, status, created_at, held_until, paid_at"
    };
}
pub(crate) use reservation_columns;

#[derive(Debug, QueryableByName)]
#[diesel(table_name = reservations, check_for_backend(diesel::pg::Pg))]
pub(crate) struct ReservationRow {
    id: Uuid,
    user_id: Uuid,
    schedule_id: Uuid,
    seat_id: Uuid,
    seat_number: i32,
    price: i64,
    status: String,
    created_at: OffsetDateTime,
    held_until: OffsetDateTime,
    paid_at: Option<OffsetDateTime>,
}

impl ReservationRow {
    pub(crate) fn into_domain(self) -> Result<Reservation, StoreError> {
        Ok(Reservation {
            id: ReservationId::from_uuid(self.id),
            user_id: UserId::from_uuid(self.user_id),
            schedule_id: ScheduleId::from_uuid(self.schedule_id),
            seat_id: SeatId::from_uuid(self.seat_id),
            seat_number: u32::try_from(self.seat_number).map_err(|_| corrupt("reservations.seat_number"))?,
            price: Won::new(self.price),
            status: ReservationStatus::parse(&self.status).ok_or_else(|| corrupt("reservations.status"))?,
            created_at: self.created_at,
            held_until: self.held_until,
            paid_at: self.paid_at,
        })
    }
}

/// What one attempt at a hold found: the inserted row if any, whether the seat is bookable
/// here, and whether the statement's snapshot shows a live claim on it.
#[derive(Debug, QueryableByName)]
struct Attempt {
    #[diesel(embed)]
    inserted: Option<ReservationRow>,
    #[diesel(sql_type = Bool)]
    bookable: bool,
    #[diesel(sql_type = Bool)]
    claimed: bool,
}

impl Attempt {
    /// The outcome, unless the attempt met a claim it cannot judge (see `hold`).
    fn decided(self) -> Option<Result<HoldOutcome, StoreError>> {
        match self {
            Attempt { inserted: Some(row), .. } => Some(row.into_domain().map(HoldOutcome::Held)),
            Attempt { bookable: false, .. } => Some(Ok(HoldOutcome::NoSuchSeat)),
            // A claim that is live at `now` in a committed snapshot stays a claim: a HELD
            // reservation only ever becomes PAID before `held_until`, never free.
            Attempt { claimed: true, .. } => Some(Ok(HoldOutcome::SeatTaken)),
            Attempt { .. } => None,
        }
    }
}

/// One statement decides: seat of that schedule, schedule not started, no live claim (a
/// concurrent insert makes it wait for that commit, then `DO NOTHING`). It also reports
/// whether the seat is bookable and whether the snapshot shows a live claim, so a refusal
/// needs no second statement.
fn try_hold(c: &mut PgConnection, req: &HoldRequest) -> QueryResult<Attempt> {
    prepared(concat!(
        "WITH src AS ( \
           SELECT s.schedule_id, s.id, s.number, s.price \
           FROM seats s JOIN schedules sc ON sc.id = s.schedule_id \
           WHERE s.id = $4 AND s.schedule_id = $3 AND sc.starts_at > $5), \
         ins AS ( \
           INSERT INTO reservations (",
        reservation_columns!(),
        ") \
           SELECT $1, $2, src.schedule_id, src.id, src.number, src.price, 'HELD', $5, $6, NULL FROM src \
           ON CONFLICT (seat_id) WHERE status IN ('HELD', 'PAID') DO NOTHING \
           RETURNING ",
        reservation_columns!(),
        ") \
         SELECT ins.*, EXISTS (SELECT 1 FROM src) AS bookable, \
           EXISTS (SELECT 1 FROM reservations r WHERE r.seat_id = $4 AND r.status IN ('HELD', 'PAID') \
                   AND (r.status = 'PAID' OR r.held_until > $5)) AS claimed \
         FROM (SELECT) AS one LEFT JOIN ins ON TRUE"
    ))
    .bind::<SqlUuid, _>(req.reservation_id.as_uuid())
    .bind::<SqlUuid, _>(req.user_id.as_uuid())
    .bind::<SqlUuid, _>(req.schedule_id.as_uuid())
    .bind::<SqlUuid, _>(req.seat_id.as_uuid())
    .bind::<Timestamptz, _>(req.now)
    .bind::<Timestamptz, _>(req.held_until)
    .get_result(c)
}

impl ReservationStore for PgStore {
    fn hold(&self, req: &HoldRequest) -> Result<HoldOutcome, StoreError> {
        self.with_conn(|c| {
            // The common case is one autocommit statement: a free seat is held, a seat with a
            // live claim in the snapshot is taken, a seat not of this schedule or of one that
            // has started is no seat.
            let first = try_hold(c, req)?;
            if let Some(outcome) = first.decided() {
                return Ok(outcome);
            }
            // The insert met a claim that the snapshot did not show as live: a lapsed hold
            // still occupying the unique index, or a hold committed while we waited for it.
            // Retire a lapsed hold (against a payment of it, the row lock decides: whoever
            // comes second re-reads the row, EXPIRED or PAID, and backs off), then try once
            // more. Once the UPDATE has run no lapsed hold of the seat is left (a concurrent
            // expiry made it wait and skip the row), so a second conflict is a live claim.
            prepared(
                "UPDATE reservations SET status = 'EXPIRED' \
                 WHERE seat_id = $1 AND status = 'HELD' AND held_until <= $2",
            )
            .bind::<SqlUuid, _>(req.seat_id.as_uuid())
            .bind::<Timestamptz, _>(req.now)
            .execute(c)?;
            let second = try_hold(c, req)?;
            Ok(second.decided().unwrap_or(Ok(HoldOutcome::SeatTaken)))
        })?
    }

    fn find(&self, id: ReservationId) -> Result<Option<Reservation>, StoreError> {
        let row: Option<ReservationRow> = self.with_conn(|c| {
            prepared(concat!("SELECT ", reservation_columns!(), " FROM reservations WHERE id = $1"))
                .bind::<SqlUuid, _>(id.as_uuid())
                .get_result(c)
                .optional()
        })?;
        row.map(ReservationRow::into_domain).transpose()
    }

    fn release_lapsed(&self, now: OffsetDateTime) -> Result<u64, StoreError> {
        // A payment holding the row lock makes this wait and then skip the (now PAID) row.
        let n = self.with_conn(|c| {
            prepared("UPDATE reservations SET status = 'EXPIRED' WHERE status = 'HELD' AND held_until <= $1")
                .bind::<Timestamptz, _>(now)
                .execute(c)
        })?;
        Ok(n as u64)
    }
}
