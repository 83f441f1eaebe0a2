//! Concerts, schedules and seats, and the operator's catalogue and sales. A seat's status is
//! derived from its reservations when read (the domain resolves lapsed holds), so nothing here
//! is updated on reserve or pay.

use diesel::prelude::*;
use diesel::sql_types::{Array, BigInt, Bool, Int4, Int8, Nullable, Text, Timestamptz, Uuid as SqlUuid};
use domain::audit::{OperatorAction, OperatorNote};
use domain::catalogue::{
    AddSchedule, Concert, NewConcert, NewSchedule, ScheduleSales, ScheduleSummary, Seat, SeatClaim, SeatRecord,
};
use domain::ids::{ConcertId, ReservationId, ScheduleId, SeatId};
use domain::money::Won;
use domain::ports::{CatalogueStore, StoreError};
use domain::reservation::ReservationStatus;
use time::OffsetDateTime;
use uuid::Uuid;

use crate::audit::bind_line;
use crate::error::corrupt;
use crate::sql::prepared;
use crate::PgStore;

/// The concert of a schedule (no row: unknown schedule).
pub(crate) const CONCERT_OF: &str = "SELECT concert_id FROM schedules WHERE id = $1";

#[derive(Debug, QueryableByName)]
struct ConcertOfRow {
    #[diesel(sql_type = SqlUuid)]
    concert_id: Uuid,
}

pub(crate) const CONCERTS: &str = "SELECT id, title, artist, venue FROM concerts ORDER BY title, id";

/// The concert (no row: unknown) left-joined to its bookable schedules
/// (`ScheduleSummary::is_bookable_at`: `starts_at > now`) with their seat counts. A seat is
/// taken when it is not AVAILABLE by `SeatRecord::status_at`: PAID, or HELD with
/// `held_until > now`; the one-live-claim index allows one such reservation per seat, so
/// counting them per schedule counts taken seats.
pub(crate) const SCHEDULES: &str = "SELECT sc.id, sc.starts_at, \
       (SELECT count(*) FROM seats s WHERE s.schedule_id = sc.id) AS total_seats, \
       (SELECT count(*) FROM reservations r WHERE r.schedule_id = sc.id AND r.status IN ('HELD', 'PAID') \
          AND (r.status = 'PAID' OR r.held_until > $2)) AS taken_seats \
     FROM concerts c LEFT JOIN schedules sc ON sc.concert_id = c.id AND sc.starts_at > $2 \
     WHERE c.id = $1 ORDER BY sc.starts_at, sc.id";

/// The schedule left-joined to its seats and their HELD or PAID reservation (a lapsed HELD one
/// included: the domain decides), so no row means an unknown schedule and one row without a
/// seat a schedule without seats. The status literals match the partial unique index of live
/// claims, which the join probes.
pub(crate) const SEATS: &str = "SELECT s.id, sc.id AS schedule_id, s.number, s.price, \
       r.id AS reservation_id, r.status, r.held_until \
     FROM schedules sc \
     LEFT JOIN seats s ON s.schedule_id = sc.id \
     LEFT JOIN reservations r ON r.seat_id = s.id AND r.status IN ('HELD', 'PAID') \
     WHERE sc.id = $1 ORDER BY s.number";

/// A concert with its schedules and seats, in one statement (so all or nothing without a
/// transaction): nothing is inserted when the concert id exists already.
pub(crate) const CREATE_CONCERT: &str = "WITH c AS ( \
       INSERT INTO concerts (id, title, artist, venue) VALUES ($1, $2, $3, $4) \
       ON CONFLICT (id) DO NOTHING RETURNING id), \
     sc AS ( \
       INSERT INTO schedules (id, concert_id, starts_at) \
       SELECT x.id, c.id, x.starts_at FROM c, unnest($5::uuid[], $6::timestamptz[]) AS x (id, starts_at) \
       RETURNING id), \
     st AS ( \
       INSERT INTO seats (id, schedule_id, number, price) \
       SELECT x.id, x.schedule_id, x.number, x.price \
       FROM unnest($7::uuid[], $8::uuid[], $9::int4[], $10::int8[]) AS x (id, schedule_id, number, price) \
       WHERE EXISTS (SELECT 1 FROM c) RETURNING id), \
     lg AS ( \
       INSERT INTO operator_log (at, actor, action, target, before, after) \
       SELECT $11, $12, $13, $14, $15, $16 FROM c WHERE $11::timestamptz IS NOT NULL) \
     SELECT EXISTS (SELECT 1 FROM c) AS created, (SELECT count(*) FROM sc) AS schedules, \
       (SELECT count(*) FROM st) AS seats";

/// A schedule with its seats, in one statement: nothing when the concert is unknown (its row
/// is key-share locked so it cannot go away meanwhile) or the schedule id exists already.
pub(crate) const ADD_SCHEDULE: &str = "WITH c AS (SELECT id FROM concerts WHERE id = $2 FOR KEY SHARE), \
     sc AS ( \
       INSERT INTO schedules (id, concert_id, starts_at) SELECT $1, c.id, $3 FROM c \
       ON CONFLICT (id) DO NOTHING RETURNING id), \
     st AS ( \
       INSERT INTO seats (id, schedule_id, number, price) \
       SELECT x.id, sc.id, x.number, x.price FROM sc, unnest($4::uuid[], $5::int4[], $6::int8[]) AS x (id, number, price) \
       RETURNING id), \
     lg AS ( \
       INSERT INTO operator_log (at, actor, action, target, before, after) \
       SELECT $7, $8, $9, $10, $11, $12 FROM sc WHERE $7::timestamptz IS NOT NULL) \
     SELECT EXISTS (SELECT 1 FROM c) AS concert, EXISTS (SELECT 1 FROM sc) AS added, \
       (SELECT count(*) FROM st) AS seats";

/// Per schedule of the concert (no row: unknown concert; one row with NULL schedule: none),
/// its seats by `SeatRecord::status_at` at `$2`: SOLD (a PAID reservation), HELD (a HELD one
/// with `held_until > $2`), the rest AVAILABLE, and the prices paid.
pub(crate) const SALES: &str = "SELECT sc.id AS schedule_id, sc.starts_at, count(s.id) AS total, \
       count(r.id) FILTER (WHERE r.status = 'PAID') AS sold, \
       count(r.id) FILTER (WHERE r.status = 'HELD' AND r.held_until > $2) AS held, \
       COALESCE(sum(r.price) FILTER (WHERE r.status = 'PAID'), 0)::bigint AS revenue \
     FROM concerts c \
     LEFT JOIN schedules sc ON sc.concert_id = c.id \
     LEFT JOIN seats s ON s.schedule_id = sc.id \
     LEFT JOIN reservations r ON r.seat_id = s.id AND r.status IN ('HELD', 'PAID') \
     WHERE c.id = $1 GROUP BY c.id, sc.id, sc.starts_at ORDER BY sc.starts_at, sc.id";

#[derive(Debug, QueryableByName)]
struct ConcertRow {
    #[diesel(sql_type = SqlUuid)]
    id: Uuid,
    #[diesel(sql_type = Text)]
    title: String,
    #[diesel(sql_type = Text)]
    artist: String,
    #[diesel(sql_type = Text)]
    venue: String,
}

#[derive(Debug, QueryableByName)]
struct ScheduleRow {
    #[diesel(sql_type = Nullable<SqlUuid>)]
    id: Option<Uuid>,
    #[diesel(sql_type = Nullable<Timestamptz>)]
    starts_at: Option<OffsetDateTime>,
    #[diesel(sql_type = BigInt)]
    total_seats: i64,
    #[diesel(sql_type = BigInt)]
    taken_seats: i64,
}

#[derive(Debug, QueryableByName)]
struct SeatRow {
    #[diesel(sql_type = Nullable<SqlUuid>)]
    id: Option<Uuid>,
    #[diesel(sql_type = SqlUuid)]
    schedule_id: Uuid,
    #[diesel(sql_type = Nullable<Int4>)]
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

#[derive(Debug, QueryableByName)]
struct Created {
    #[diesel(sql_type = Bool)]
    created: bool,
}

#[derive(Debug, QueryableByName)]
struct Added {
    #[diesel(sql_type = Bool)]
    concert: bool,
    #[diesel(sql_type = Bool)]
    added: bool,
}

#[derive(Debug, QueryableByName)]
struct SalesRow {
    #[diesel(sql_type = Nullable<SqlUuid>)]
    schedule_id: Option<Uuid>,
    #[diesel(sql_type = Nullable<Timestamptz>)]
    starts_at: Option<OffsetDateTime>,
    #[diesel(sql_type = BigInt)]
    total: i64,
    #[diesel(sql_type = BigInt)]
    sold: i64,
    #[diesel(sql_type = BigInt)]
    held: i64,
    #[diesel(sql_type = BigInt)]
    revenue: i64,
}

fn count(n: i64, what: &str) -> Result<u32, StoreError> {
    u32::try_from(n).map_err(|_| corrupt(what))
}

fn seat_number(n: u32) -> Result<i32, StoreError> {
    i32::try_from(n).map_err(|_| StoreError::Internal(format!("seat number {n} does not fit the schema")))
}

impl CatalogueStore for PgStore {
    fn concert_of(&self, schedule: ScheduleId) -> Result<Option<ConcertId>, StoreError> {
        let row: Option<ConcertOfRow> =
            self.autocommit(|c| prepared(CONCERT_OF).bind::<SqlUuid, _>(schedule.as_uuid()).get_result(c).optional())?;
        Ok(row.map(|r| ConcertId::from_uuid(r.concert_id)))
    }

    fn concerts(&self) -> Result<Vec<Concert>, StoreError> {
        let rows: Vec<ConcertRow> = self.autocommit(|c| prepared(CONCERTS).load(c))?;
        Ok(rows
            .into_iter()
            .map(|r| Concert { id: ConcertId::from_uuid(r.id), title: r.title, artist: r.artist, venue: r.venue })
            .collect())
    }

    fn schedules(&self, concert: ConcertId, now: OffsetDateTime) -> Result<Option<Vec<ScheduleSummary>>, StoreError> {
        let rows: Vec<ScheduleRow> = self.autocommit(|c| {
            prepared(SCHEDULES).bind::<SqlUuid, _>(concert.as_uuid()).bind::<Timestamptz, _>(now).load(c)
        })?;
        if rows.is_empty() {
            return Ok(None);
        }
        rows.into_iter()
            .filter_map(|r| Some((r.id?, r.starts_at?, r.total_seats, r.taken_seats)))
            .map(|(id, starts_at, total, taken)| {
                Ok(ScheduleSummary {
                    id: ScheduleId::from_uuid(id),
                    concert_id: concert,
                    starts_at,
                    total_seats: count(total, "seat count")?,
                    available_seats: count((total - taken).max(0), "seat count")?,
                })
            })
            .collect::<Result<Vec<_>, _>>()
            .map(Some)
    }

    fn seats(&self, schedule: ScheduleId) -> Result<Option<Vec<SeatRecord>>, StoreError> {
        let rows: Vec<SeatRow> = self.autocommit(|c| prepared(SEATS).bind::<SqlUuid, _>(schedule.as_uuid()).load(c))?;
        if rows.is_empty() {
            return Ok(None);
        }
        rows.into_iter()
            .filter_map(|r| Some((r.id?, r.number?, r.price?, r)))
            .map(|(id, number, price, r)| {
                let claim = match (r.reservation_id, r.status, r.held_until) {
                    (Some(claim_id), Some(status), Some(held_until)) => Some(SeatClaim {
                        reservation_id: ReservationId::from_uuid(claim_id),
                        status: status.parse::<ReservationStatus>().map_err(|_| corrupt("reservations.status"))?,
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

    fn create_concert(&self, concert: &NewConcert, note: Option<&OperatorNote>) -> Result<bool, StoreError> {
        let line = note.map(|n| OperatorAction::concert_created(n, concert));
        let line = line.as_ref();
        let k = &concert.concert;
        let schedule_ids: Vec<Uuid> = concert.schedules.iter().map(|s| s.id.as_uuid()).collect();
        let starts: Vec<OffsetDateTime> = concert.schedules.iter().map(|s| s.starts_at).collect();
        let seats: Vec<&Seat> = concert.schedules.iter().flat_map(|s| &s.seats).collect();
        let seat_ids: Vec<Uuid> = seats.iter().map(|s| s.id.as_uuid()).collect();
        let seat_schedules: Vec<Uuid> = seats.iter().map(|s| s.schedule_id.as_uuid()).collect();
        let numbers = seats.iter().map(|s| seat_number(s.number)).collect::<Result<Vec<_>, _>>()?;
        let prices: Vec<i64> = seats.iter().map(|s| s.price.get()).collect();
        let row: Created = self.write_alone(|c| {
            let query = prepared(CREATE_CONCERT)
                .bind::<SqlUuid, _>(k.id.as_uuid())
                .bind::<Text, _>(k.title.as_str())
                .bind::<Text, _>(k.artist.as_str())
                .bind::<Text, _>(k.venue.as_str())
                .bind::<Array<SqlUuid>, _>(&schedule_ids)
                .bind::<Array<Timestamptz>, _>(&starts)
                .bind::<Array<SqlUuid>, _>(&seat_ids)
                .bind::<Array<SqlUuid>, _>(&seat_schedules)
                .bind::<Array<Int4>, _>(&numbers)
                .bind::<Array<Int8>, _>(&prices);
            bind_line!(query, line).get_result(c)
        })?;
        Ok(row.created)
    }

    fn add_schedule(&self, schedule: &NewSchedule, note: Option<&OperatorNote>) -> Result<AddSchedule, StoreError> {
        let line = note.map(|n| OperatorAction::schedule_added(n, schedule));
        let line = line.as_ref();
        let seat_ids: Vec<Uuid> = schedule.seats.iter().map(|s| s.id.as_uuid()).collect();
        let numbers = schedule.seats.iter().map(|s| seat_number(s.number)).collect::<Result<Vec<_>, _>>()?;
        let prices: Vec<i64> = schedule.seats.iter().map(|s| s.price.get()).collect();
        let row: Added = self.write_alone(|c| {
            let query = prepared(ADD_SCHEDULE)
                .bind::<SqlUuid, _>(schedule.id.as_uuid())
                .bind::<SqlUuid, _>(schedule.concert_id.as_uuid())
                .bind::<Timestamptz, _>(schedule.starts_at)
                .bind::<Array<SqlUuid>, _>(&seat_ids)
                .bind::<Array<Int4>, _>(&numbers)
                .bind::<Array<Int8>, _>(&prices);
            bind_line!(query, line).get_result(c)
        })?;
        Ok(match (row.concert, row.added) {
            (false, _) => AddSchedule::NoSuchConcert,
            (true, false) => AddSchedule::AlreadyExists,
            (true, true) => AddSchedule::Added,
        })
    }

    fn sales(&self, concert: ConcertId, now: OffsetDateTime) -> Result<Option<Vec<ScheduleSales>>, StoreError> {
        let rows: Vec<SalesRow> = self.autocommit(|c| {
            prepared(SALES).bind::<SqlUuid, _>(concert.as_uuid()).bind::<Timestamptz, _>(now).load(c)
        })?;
        if rows.is_empty() {
            return Ok(None);
        }
        rows.into_iter()
            .filter_map(|r| Some((r.schedule_id?, r.starts_at?, r)))
            .map(|(id, starts_at, r)| {
                let total = count(r.total, "seat count")?;
                let sold = count(r.sold, "sold count")?;
                let held = count(r.held, "held count")?;
                Ok(ScheduleSales {
                    schedule_id: ScheduleId::from_uuid(id),
                    starts_at,
                    total_seats: total,
                    sold,
                    held,
                    available: total.saturating_sub(sold + held),
                    revenue: Won::new(r.revenue),
                })
            })
            .collect::<Result<Vec<_>, _>>()
            .map(Some)
    }
}
