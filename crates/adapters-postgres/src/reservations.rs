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

#[derive(Debug, QueryableByName)]
struct Flag {
    #[diesel(sql_type = Bool)]
    flag: bool,
}

impl ReservationStore for PgStore {
    fn hold(&self, req: &HoldRequest) -> Result<HoldOutcome, StoreError> {
        let row: Result<Option<ReservationRow>, bool> = self.with_conn(|c| {
            c.transaction(|c| {
                // Retire a lapsed hold first so it stops occupying the unique index. Against a
                // payment of that hold, the row lock decides: whoever comes second re-reads the
                // row (EXPIRED or PAID) and backs off.
                prepared(
                    "UPDATE reservations SET status = 'EXPIRED' \
                     WHERE seat_id = $1 AND status = 'HELD' AND held_until <= $2",
                )
                .bind::<SqlUuid, _>(req.seat_id.as_uuid())
                .bind::<Timestamptz, _>(req.now)
                .execute(c)?;
                // One statement decides: seat of that schedule, schedule not started, no live
                // claim (a concurrent insert makes us wait for its commit, then DO NOTHING).
                let inserted: Option<ReservationRow> = prepared(concat!(
                    "INSERT INTO reservations (",
                    reservation_columns!(),
                    ") SELECT $1, $2, s.schedule_id, s.id, s.number, s.price, 'HELD', $5, $6, NULL \
                     FROM seats s JOIN schedules sc ON sc.id = s.schedule_id \
                     WHERE s.id = $4 AND s.schedule_id = $3 AND sc.starts_at > $5 \
                     ON CONFLICT (seat_id) WHERE status IN ('HELD', 'PAID') DO NOTHING \
                     RETURNING ",
                    reservation_columns!()
                ))
                .bind::<SqlUuid, _>(req.reservation_id.as_uuid())
                .bind::<SqlUuid, _>(req.user_id.as_uuid())
                .bind::<SqlUuid, _>(req.schedule_id.as_uuid())
                .bind::<SqlUuid, _>(req.seat_id.as_uuid())
                .bind::<Timestamptz, _>(req.now)
                .bind::<Timestamptz, _>(req.held_until)
                .get_result(c)
                .optional()?;
                if let Some(row) = inserted {
                    return Ok(Ok(Some(row)));
                }
                // Nothing inserted: either the seat is claimed or it is not bookable here.
                let bookable = prepared(
                    "SELECT EXISTS (SELECT 1 FROM seats s JOIN schedules sc ON sc.id = s.schedule_id \
                     WHERE s.id = $1 AND s.schedule_id = $2 AND sc.starts_at > $3) AS flag",
                )
                .bind::<SqlUuid, _>(req.seat_id.as_uuid())
                .bind::<SqlUuid, _>(req.schedule_id.as_uuid())
                .bind::<Timestamptz, _>(req.now)
                .get_result::<Flag>(c)?
                .flag;
                Ok(Err(bookable))
            })
        })?;
        match row {
            Ok(Some(row)) => Ok(HoldOutcome::Held(row.into_domain()?)),
            Ok(None) | Err(false) => Ok(HoldOutcome::NoSuchSeat),
            Err(true) => Ok(HoldOutcome::SeatTaken),
        }
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
