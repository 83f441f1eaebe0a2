//! Concerts, schedules and seats. Seat status is derived from reservations at read time (the
//! domain resolves lapsed holds), so nothing here is updated on reserve or pay.

use diesel::prelude::*;
use diesel::sql_types::{BigInt, Integer, Nullable, Text, Timestamptz, Uuid as SqlUuid};
use domain::catalogue::{Concert, ScheduleSummary, Seat, SeatClaim, SeatRecord};
use domain::ids::{ConcertId, ReservationId, ScheduleId, SeatId};
use domain::money::Won;
use domain::ports::{CatalogueStore, StoreError};
use domain::reservation::ReservationStatus;
use time::OffsetDateTime;
use uuid::Uuid;

use crate::error::corrupt;
use crate::schema::concerts;
use crate::sql::prepared;
use crate::PgStore;

#[derive(Debug, Queryable, Selectable)]
#[diesel(table_name = concerts, check_for_backend(diesel::pg::Pg))]
struct ConcertRow {
    id: Uuid,
    title: String,
    artist: String,
    venue: String,
}

#[derive(Debug, QueryableByName)]
struct ScheduleRow {
    #[diesel(sql_type = SqlUuid)]
    id: Uuid,
    #[diesel(sql_type = SqlUuid)]
    concert_id: Uuid,
    #[diesel(sql_type = Timestamptz)]
    starts_at: OffsetDateTime,
    #[diesel(sql_type = BigInt)]
    total_seats: i64,
    #[diesel(sql_type = BigInt)]
    taken_seats: i64,
}

/// A seat of the schedule with its live claim, or (all seat columns NULL) the schedule alone
/// when it has no seats.
#[derive(Debug, QueryableByName)]
struct SeatRow {
    #[diesel(sql_type = Nullable<SqlUuid>)]
    id: Option<Uuid>,
    #[diesel(sql_type = SqlUuid)]
    schedule_id: Uuid,
    #[diesel(sql_type = Nullable<Integer>)]
    number: Option<i32>,
    #[diesel(sql_type = Nullable<BigInt>)]
    price: Option<i64>,
    #[diesel(sql_type = Nullable<SqlUuid>)]
    reservation_id: Option<Uuid>,
    #[diesel(sql_type = Nullable<Text>)]
    status: Option<String>,
    #[diesel(sql_type = Nullable<Timestamptz>)]
    held_until: Option<OffsetDateTime>,
}

fn count(n: i64, what: &str) -> Result<u32, StoreError> {
    u32::try_from(n).map_err(|_| corrupt(what))
}

impl CatalogueStore for PgStore {
    fn concerts(&self) -> Result<Vec<Concert>, StoreError> {
        let rows: Vec<ConcertRow> = self.with_conn(|c| {
            concerts::table.select(ConcertRow::as_select()).order((concerts::title, concerts::id)).load(c)
        })?;
        Ok(rows
            .into_iter()
            .map(|r| Concert { id: ConcertId::from_uuid(r.id), title: r.title, artist: r.artist, venue: r.venue })
            .collect())
    }

    fn schedules(&self, concert: ConcertId, now: OffsetDateTime) -> Result<Option<Vec<ScheduleSummary>>, StoreError> {
        let (exists, rows) = self.with_conn(|c| {
            let exists: bool =
                diesel::select(diesel::dsl::exists(concerts::table.find(concert.as_uuid()))).get_result(c)?;
            // At most one live claim per seat (unique index), so counting live claims per
            // schedule counts taken seats.
            let rows: Vec<ScheduleRow> = prepared(
                "SELECT sc.id, sc.concert_id, sc.starts_at, \
                   (SELECT count(*) FROM seats s WHERE s.schedule_id = sc.id) AS total_seats, \
                   (SELECT count(*) FROM reservations r WHERE r.schedule_id = sc.id \
                      AND r.status IN ('HELD', 'PAID') \
                      AND (r.status = 'PAID' OR r.held_until > $2)) AS taken_seats \
                 FROM schedules sc WHERE sc.concert_id = $1 AND sc.starts_at > $2 \
                 ORDER BY sc.starts_at, sc.id",
            )
            .bind::<SqlUuid, _>(concert.as_uuid())
            .bind::<Timestamptz, _>(now)
            .load(c)?;
            Ok((exists, rows))
        })?;
        if !exists {
            return Ok(None);
        }
        rows.into_iter()
            .map(|r| {
                Ok(ScheduleSummary {
                    id: ScheduleId::from_uuid(r.id),
                    concert_id: ConcertId::from_uuid(r.concert_id),
                    starts_at: r.starts_at,
                    total_seats: count(r.total_seats, "seat count")?,
                    available_seats: count((r.total_seats - r.taken_seats).max(0), "seat count")?,
                })
            })
            .collect::<Result<Vec<_>, _>>()
            .map(Some)
    }

    fn seats(&self, schedule: ScheduleId) -> Result<Option<Vec<SeatRecord>>, StoreError> {
        // One prepared statement: the schedule left-joined to its seats, so no row at all means
        // an unknown schedule and one row without a seat a schedule without seats. The status
        // literals match the partial unique index on live claims, which the join probes.
        let rows: Vec<SeatRow> = self.with_conn(|c| {
            prepared(
                "SELECT s.id, sc.id AS schedule_id, s.number, s.price, \
                   r.id AS reservation_id, r.status, r.held_until \
                 FROM schedules sc \
                 LEFT JOIN seats s ON s.schedule_id = sc.id \
                 LEFT JOIN reservations r ON r.seat_id = s.id AND r.status IN ('HELD', 'PAID') \
                 WHERE sc.id = $1 ORDER BY s.number",
            )
            .bind::<SqlUuid, _>(schedule.as_uuid())
            .load(c)
        })?;
        if rows.is_empty() {
            return Ok(None);
        }
        rows.into_iter()
            .filter_map(|r| Some((r.id?, r.number?, r.price?, r)))
            .map(|(id, number, price, r)| {
                let claim = match (r.reservation_id, r.status, r.held_until) {
                    (Some(claim_id), Some(status), Some(held_until)) => Some(SeatClaim {
                        reservation_id: ReservationId::from_uuid(claim_id),
                        status: ReservationStatus::parse(&status).ok_or_else(|| corrupt("reservations.status"))?,
                        held_until,
                    }),
                    _ => None,
                };
                Ok(SeatRecord {
                    seat: Seat {
                        id: SeatId::from_uuid(id),
                        schedule_id: ScheduleId::from_uuid(r.schedule_id),
                        number: u32::try_from(number).map_err(|_| corrupt("seats.number"))?,
                        price: Won::new(price),
                    },
                    claim,
                })
            })
            .collect::<Result<Vec<_>, _>>()
            .map(Some)
    }
}
