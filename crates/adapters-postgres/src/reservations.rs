//! Seat holds: one conditional INSERT on the partial unique index of live claims, so no seat
//! can ever have two, inside a transaction that holds the user's hold lock, so one user's
//! concurrent holds cannot pass the hold limit.

use std::time::Instant;

use diesel::prelude::*;
use diesel::sql_types::{BigInt, Bool, Timestamptz, Uuid as SqlUuid};
use domain::ids::{ReservationId, ScheduleId, SeatId, UserId};
use domain::money::Won;
use domain::ports::{ReservationStore, StoreError};
use domain::reservation::{may_hold_another, HoldOutcome, HoldRequest, Reservation, ReservationStatus};
use time::OffsetDateTime;
use uuid::Uuid;

use crate::error::{corrupt, Fail};
use crate::locks;
use crate::schema::reservations;
use crate::sql::prepared;
use crate::PgStore;

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
            status: self.status.parse::<ReservationStatus>().map_err(|_| corrupt("reservations.status"))?,
            created_at: self.created_at,
            held_until: self.held_until,
            paid_at: self.paid_at,
        })
    }
}

/// One attempt at a hold, after the user's hold lock (so `live`, counted in this statement's
/// snapshot, includes every hold of the user committed before). It inserts the HELD
/// reservation if the seat belongs to the schedule and the schedule is bookable
/// (`ScheduleSummary::is_bookable_at`: `starts_at > now`), the user's live holds allow one more
/// (`may_hold_another`: `live < max`; live = HELD with `held_until > now`, as
/// `Reservation::status_at`), and the one-live-claim index takes it (a concurrent insert makes
/// it wait for that commit, then `DO NOTHING`). It also reports what a refusal needs: whether
/// the seat is bookable, whether the snapshot shows a live claim on it (PAID, or HELD with
/// `held_until > now`: `Reservation::occupies_seat_at`), and the user's live holds.
pub(crate) const HOLD: &str = "WITH src AS ( \
       SELECT s.schedule_id, s.id, s.number, s.price \
       FROM seats s JOIN schedules sc ON sc.id = s.schedule_id \
       WHERE s.id = $4 AND s.schedule_id = $3 AND sc.starts_at > $5), \
     live AS ( \
       SELECT count(*) AS n FROM reservations WHERE user_id = $2 AND status = 'HELD' AND held_until > $5), \
     ins AS ( \
       INSERT INTO reservations \
         (id, user_id, schedule_id, seat_id, seat_number, price, status, created_at, held_until, paid_at) \
       SELECT $1, $2, src.schedule_id, src.id, src.number, src.price, 'HELD', $5, $6, NULL \
       FROM src, live WHERE live.n < $7 \
       ON CONFLICT (seat_id) WHERE status IN ('HELD', 'PAID') DO NOTHING \
       RETURNING id, user_id, schedule_id, seat_id, seat_number, price, status, created_at, held_until, paid_at) \
     SELECT ins.*, EXISTS (SELECT 1 FROM src) AS bookable, \
       EXISTS (SELECT 1 FROM reservations r WHERE r.seat_id = $4 AND r.status IN ('HELD', 'PAID') \
               AND (r.status = 'PAID' OR r.held_until > $5)) AS claimed, \
       (SELECT n FROM live) AS live_holds \
     FROM (SELECT) AS one LEFT JOIN ins ON TRUE";

/// Retires the seat's lapsed hold (HELD, `held_until <= now`), which still occupies the
/// one-live-claim index. Against a payment of it, the row lock decides: whoever comes second
/// re-reads the row (EXPIRED or PAID) and backs off.
pub(crate) const EXPIRE_SEAT_LAPSED: &str =
    "UPDATE reservations SET status = 'EXPIRED' WHERE seat_id = $1 AND status = 'HELD' AND held_until <= $2";

pub(crate) const FIND_RESERVATION: &str = "SELECT id, user_id, schedule_id, seat_id, seat_number, price, status, \
       created_at, held_until, paid_at FROM reservations WHERE id = $1";

/// At most `$2` HELD reservations lapsed by `$1` become EXPIRED (lapsed: `held_until <= now`,
/// restating `Reservation::status_at`). SKIP LOCKED: concurrent sweeps
/// take disjoint rows, and a reservation a payment holds is left to it (it becomes PAID, or the
/// next sweep takes it), so each changes once.
pub(crate) const RELEASE_LAPSED: &str = "UPDATE reservations SET status = 'EXPIRED' \
     WHERE id IN (SELECT id FROM reservations WHERE status = 'HELD' AND held_until <= $1 \
       ORDER BY held_until LIMIT $2 FOR UPDATE SKIP LOCKED) \
     AND status = 'HELD'";

/// What one attempt at a hold found.
#[derive(Debug, QueryableByName)]
struct Attempt {
    #[diesel(embed)]
    inserted: Option<ReservationRow>,
    #[diesel(sql_type = Bool)]
    bookable: bool,
    #[diesel(sql_type = Bool)]
    claimed: bool,
    #[diesel(sql_type = BigInt)]
    live_holds: i64,
}

impl Attempt {
    /// The outcome, unless the insert met a claim the snapshot did not show as live (see
    /// `hold`). The domain's order: no such seat, seat taken, hold limit.
    fn decided(self, max: u32) -> Option<Result<HoldOutcome, StoreError>> {
        let live = u32::try_from(self.live_holds).unwrap_or(u32::MAX);
        match self {
            Attempt { inserted: Some(row), .. } => Some(row.into_domain().map(HoldOutcome::Held)),
            Attempt { bookable: false, .. } => Some(Ok(HoldOutcome::NoSuchSeat)),
            // A claim that is live at `now` in a committed snapshot stays a claim: a HELD
            // reservation only ever becomes PAID before `held_until`, never free.
            Attempt { claimed: true, .. } => Some(Ok(HoldOutcome::SeatTaken)),
            Attempt { .. } if !may_hold_another(live, max) => Some(Ok(HoldOutcome::HoldLimit)),
            Attempt { .. } => None,
        }
    }
}

fn attempt(c: &mut PgConnection, req: &HoldRequest) -> QueryResult<Attempt> {
    prepared(HOLD)
        .bind::<SqlUuid, _>(req.reservation_id.as_uuid())
        .bind::<SqlUuid, _>(req.user_id.as_uuid())
        .bind::<SqlUuid, _>(req.schedule_id.as_uuid())
        .bind::<SqlUuid, _>(req.seat_id.as_uuid())
        .bind::<Timestamptz, _>(req.now)
        .bind::<Timestamptz, _>(req.held_until)
        .bind::<BigInt, _>(i64::from(req.max_live_holds))
        .get_result(c)
}

impl ReservationStore for PgStore {
    fn hold(&self, req: &HoldRequest) -> Result<HoldOutcome, StoreError> {
        let started = Instant::now();
        let max = req.max_live_holds;
        // `BEGIN` and the user's hold lock in one round trip; the count runs in the next
        // statement, whose snapshot sees every hold of the user committed before the lock.
        let outcome = self.transaction(&locks::holds_begin(req.user_id), started, |tx| {
            if let Some(outcome) = attempt(tx.conn()?, req)?.decided(max) {
                return Ok(outcome?);
            }
            // The insert met a claim that the snapshot did not show as live: a lapsed hold
            // still in the unique index, or a hold committed while we waited for it. Retire a
            // lapsed one, then try once more; after the UPDATE no lapsed hold of the seat is
            // left (a concurrent expiry made it wait and skip the row), so a second conflict
            // is a live claim.
            prepared(EXPIRE_SEAT_LAPSED)
                .bind::<SqlUuid, _>(req.seat_id.as_uuid())
                .bind::<Timestamptz, _>(req.now)
                .execute(tx.conn()?)?;
            let outcome = attempt(tx.conn()?, req)?.decided(max).unwrap_or(Ok(HoldOutcome::SeatTaken))?;
            Ok::<_, Fail<()>>(outcome)
        })?;
        outcome.map_err(|()| StoreError::Internal("the hold refused itself".into()))
    }

    fn find(&self, id: ReservationId) -> Result<Option<Reservation>, StoreError> {
        let row: Option<ReservationRow> =
            self.autocommit(|c| prepared(FIND_RESERVATION).bind::<SqlUuid, _>(id.as_uuid()).get_result(c).optional())?;
        row.map(ReservationRow::into_domain).transpose()
    }

    fn release_lapsed(&self, now: OffsetDateTime, limit: u32) -> Result<u64, StoreError> {
        let n = self.autocommit(|c| {
            prepared(RELEASE_LAPSED).bind::<Timestamptz, _>(now).bind::<BigInt, _>(i64::from(limit)).execute(c)
        })?;
        Ok(n as u64)
    }
}
