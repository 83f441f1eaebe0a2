//! The rooms other than `main` (`rooms`) and the concerts each gates (`room_concerts`, whose
//! primary key keeps a concert in at most one room: of two concurrent creations or updates that
//! take one concert, one inserts its row and the other meets the conflict). A room's settings
//! (pause, N, M, TTL, cap) live in its row; `main`'s stay in `queue_settings`.

use std::collections::HashSet;
use std::time::Instant;

use diesel::prelude::*;
use diesel::sql_types::{Array, BigInt, Bool, Int4, Nullable, Text, Timestamptz, Uuid as SqlUuid};
use domain::audit::{OperatorAction, OperatorNote};
use domain::ids::ConcertId;
use domain::ports::{ChangeRoom, RoomStore, StoreError};
use domain::queue::{AdmissionPolicy, QueueSettings};
use domain::room::{CreateRoomOutcome, Room, RoomId, UpdateRoomOutcome};
use time::{Duration, OffsetDateTime};
use uuid::Uuid;

use crate::error::{corrupt, Fail};
use crate::sql::prepared;
use crate::PgStore;

/// The columns of a room as [`RoomRow`] reads them, its concerts in order.
macro_rules! room_columns {
    () => {
        "r.id, r.name, r.opens_at, r.prequeue_opens_at, r.draw_at_open, r.abandon_after_micros, r.closed, \
         r.paused, r.admit_batch, r.admit_interval_micros, r.active_ttl_micros, r.max_active, \
         ARRAY(SELECT c.concert_id FROM room_concerts c WHERE c.room_id = r.id ORDER BY c.concert_id) AS concerts"
    };
}

/// Every room, by id (byte order, as `RoomId` sorts).
pub(crate) const ROOMS: &str = concat!("SELECT ", room_columns!(), " FROM rooms r ORDER BY r.id COLLATE \"C\"");

/// One room, locked until the end of the transaction (every change of it queues here).
pub(crate) const ROOM_LOCK: &str = concat!("SELECT ", room_columns!(), " FROM rooms r WHERE r.id = $1 FOR UPDATE OF r");

/// A new room unless the id is taken (then no row: a concurrent creation of the same id waits
/// for the first one's outcome).
pub(crate) const ROOM_INSERT: &str = "INSERT INTO rooms (id, name, opens_at, prequeue_opens_at, draw_at_open, \
       abandon_after_micros, closed, paused, admit_batch, admit_interval_micros, active_ttl_micros, max_active, \
       created_at) \
     VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, COALESCE($13::timestamptz, statement_timestamp())) \
     ON CONFLICT (id) DO NOTHING";

/// A room's row after a change.
pub(crate) const ROOM_UPDATE: &str = "UPDATE rooms SET name = $2, opens_at = $3, prequeue_opens_at = $4, \
       draw_at_open = $5, abandon_after_micros = $6, closed = $7, paused = $8, admit_batch = $9, \
       admit_interval_micros = $10, active_ttl_micros = $11, max_active = $12 \
     WHERE id = $1";

/// The concerts among `$1` that do not exist.
pub(crate) const UNKNOWN_CONCERTS: &str =
    "SELECT c.id AS concert_id FROM unnest($1::uuid[]) AS c (id) WHERE NOT EXISTS (SELECT 1 FROM concerts k WHERE k.id = c.id)";

/// Room `$2` takes the concerts of `$1` it does not list yet; returns those it took (one that
/// another room lists, or takes concurrently, is not returned).
pub(crate) const TAKE_CONCERTS: &str = "INSERT INTO room_concerts (concert_id, room_id) \
     SELECT c.id, $2 FROM unnest($1::uuid[]) AS c (id) \
     WHERE NOT EXISTS (SELECT 1 FROM room_concerts rc WHERE rc.concert_id = c.id AND rc.room_id = $2) \
     ON CONFLICT (concert_id) DO NOTHING RETURNING concert_id";

/// Room `$1`'s concerts outside `$2` go back to `main`.
pub(crate) const RELEASE_CONCERTS: &str =
    "DELETE FROM room_concerts WHERE room_id = $1 AND concert_id <> ALL($2::uuid[])";

/// The concerts room `$1` lists.
pub(crate) const CONCERTS_OF: &str = "SELECT concert_id FROM room_concerts WHERE room_id = $1";

#[derive(Debug, QueryableByName)]
struct RoomRow {
    #[diesel(sql_type = Text)]
    id: String,
    #[diesel(sql_type = Text)]
    name: String,
    #[diesel(sql_type = Nullable<Timestamptz>)]
    opens_at: Option<OffsetDateTime>,
    #[diesel(sql_type = Nullable<Timestamptz>)]
    prequeue_opens_at: Option<OffsetDateTime>,
    #[diesel(sql_type = Bool)]
    draw_at_open: bool,
    #[diesel(sql_type = Nullable<BigInt>)]
    abandon_after_micros: Option<i64>,
    #[diesel(sql_type = Bool)]
    closed: bool,
    #[diesel(sql_type = Bool)]
    paused: bool,
    #[diesel(sql_type = Int4)]
    admit_batch: i32,
    #[diesel(sql_type = BigInt)]
    admit_interval_micros: i64,
    #[diesel(sql_type = BigInt)]
    active_ttl_micros: i64,
    #[diesel(sql_type = Nullable<Int4>)]
    max_active: Option<i32>,
    #[diesel(sql_type = Array<SqlUuid>)]
    concerts: Vec<Uuid>,
}

impl RoomRow {
    fn into_domain(self) -> Result<Room, StoreError> {
        let count = |v: i32, what| u32::try_from(v).map_err(|_| corrupt(what));
        let mut concerts: Vec<ConcertId> = self.concerts.into_iter().map(ConcertId::from_uuid).collect();
        concerts.sort();
        Ok(Room {
            id: RoomId::parse(&self.id).map_err(|_| corrupt("rooms.id"))?,
            name: self.name,
            concerts,
            opens_at: self.opens_at,
            prequeue_opens_at: self.prequeue_opens_at,
            draw_at_open: self.draw_at_open,
            abandon_after: self.abandon_after_micros.map(Duration::microseconds),
            closed: self.closed,
            settings: QueueSettings {
                paused: self.paused,
                admission: AdmissionPolicy {
                    batch: count(self.admit_batch, "rooms.admit_batch")?,
                    interval: Duration::microseconds(self.admit_interval_micros),
                    active_ttl: Duration::microseconds(self.active_ttl_micros),
                    max_active: self.max_active.map(|m| count(m, "rooms.max_active")).transpose()?,
                    abandon_after: None,
                },
            },
        })
    }
}

/// A room's row as bound into [`ROOM_INSERT`] and [`ROOM_UPDATE`] (`$1..$12`).
struct RoomValues {
    batch: i32,
    interval: i64,
    ttl: i64,
    max_active: Option<i32>,
    abandon_after: Option<i64>,
}

impl RoomValues {
    fn of(room: &Room) -> Result<Self, StoreError> {
        let a = room.settings.admission;
        let int = |v: u32, what| i32::try_from(v).map_err(|_| StoreError::Internal(format!("{what} {v} too large")));
        let micros = |d: Duration, what| {
            i64::try_from(d.whole_microseconds()).map_err(|_| StoreError::Internal(format!("{what} too long")))
        };
        Ok(Self {
            batch: int(a.batch, "admit batch")?,
            interval: micros(a.interval, "admit interval")?,
            ttl: micros(a.active_ttl, "active TTL")?,
            max_active: a.max_active.map(|m| int(m, "max active")).transpose()?,
            abandon_after: room.abandon_after.map(|d| micros(d, "abandon after")).transpose()?,
        })
    }
}

/// Binds a room as `$1..$12` of [`ROOM_INSERT`] or [`ROOM_UPDATE`].
macro_rules! bind_room {
    ($sql:expr, $room:expr, $v:expr) => {
        prepared($sql)
            .bind::<Text, _>($room.id.as_str())
            .bind::<Text, _>($room.name.as_str())
            .bind::<Nullable<Timestamptz>, _>($room.opens_at)
            .bind::<Nullable<Timestamptz>, _>($room.prequeue_opens_at)
            .bind::<Bool, _>($room.draw_at_open)
            .bind::<Nullable<BigInt>, _>($v.abandon_after)
            .bind::<Bool, _>($room.closed)
            .bind::<Bool, _>($room.settings.paused)
            .bind::<Int4, _>($v.batch)
            .bind::<BigInt, _>($v.interval)
            .bind::<BigInt, _>($v.ttl)
            .bind::<Nullable<Int4>, _>($v.max_active)
    };
}

#[derive(Debug, QueryableByName)]
struct ConcertRow {
    #[diesel(sql_type = SqlUuid)]
    concert_id: Uuid,
}

/// Why a room cannot list its concerts.
enum Conflict {
    Taken(ConcertId),
    Unknown(ConcertId),
}

/// Makes room `room` list `wanted` (it lists `had` now), inside the caller's transaction: the
/// concerts it no longer lists go back to `main`, the added ones must exist and be in no other
/// room. The first concert of `wanted` (in its order) that cannot be listed is the conflict;
/// the caller then rolls back.
fn list_concerts(
    conn: &mut PgConnection,
    room: &str,
    wanted: &[ConcertId],
    release: bool,
) -> Result<Option<Conflict>, Fail<()>> {
    let ids: Vec<Uuid> = wanted.iter().map(|c| c.as_uuid()).collect();
    if release {
        prepared(RELEASE_CONCERTS).bind::<Text, _>(room).bind::<Array<SqlUuid>, _>(&ids).execute(conn)?;
    }
    if ids.is_empty() {
        return Ok(None);
    }
    let unknown: HashSet<Uuid> = prepared(UNKNOWN_CONCERTS)
        .bind::<Array<SqlUuid>, _>(&ids)
        .load::<ConcertRow>(conn)?
        .into_iter()
        .map(|r| r.concert_id)
        .collect();
    let known: Vec<Uuid> = ids.iter().copied().filter(|c| !unknown.contains(c)).collect();
    if !known.is_empty() {
        prepared(TAKE_CONCERTS).bind::<Array<SqlUuid>, _>(&known).bind::<Text, _>(room).execute(conn)?;
    }
    let listed: HashSet<Uuid> = prepared(CONCERTS_OF)
        .bind::<Text, _>(room)
        .load::<ConcertRow>(conn)?
        .into_iter()
        .map(|r| r.concert_id)
        .collect();
    Ok(wanted.iter().find_map(|c| {
        if unknown.contains(&c.as_uuid()) {
            Some(Conflict::Unknown(*c))
        } else if listed.contains(&c.as_uuid()) {
            None
        } else {
            Some(Conflict::Taken(*c))
        }
    }))
}

impl RoomStore for PgStore {
    fn rooms(&self) -> Result<Vec<Room>, StoreError> {
        let rows: Vec<RoomRow> = self.autocommit(|c| prepared(ROOMS).load(c))?;
        rows.into_iter().map(RoomRow::into_domain).collect()
    }

    fn create_room(&self, room: &Room, note: Option<&OperatorNote>) -> Result<CreateRoomOutcome, StoreError> {
        let started = Instant::now();
        let values = RoomValues::of(room)?;
        let created_at = note.map(|n| n.at).or_else(|| self.store_now());
        let outcome = self.transaction("BEGIN", started, |tx| {
            let inserted = bind_room!(ROOM_INSERT, room, values)
                .bind::<Nullable<Timestamptz>, _>(created_at)
                .execute(tx.conn()?)?;
            if inserted == 0 {
                return Err(Fail::Refuse(CreateRoomOutcome::Exists));
            }
            match list_concerts(tx.conn()?, room.id.as_str(), &room.concerts, false).map_err(refused)? {
                Some(Conflict::Taken(c)) => return Err(Fail::Refuse(CreateRoomOutcome::ConcertTaken(c))),
                Some(Conflict::Unknown(c)) => return Err(Fail::Refuse(CreateRoomOutcome::UnknownConcert(c))),
                None => {}
            }
            // The operator log's line commits with the room it records.
            if let Some(note) = note {
                crate::audit::write(tx.conn()?, &OperatorAction::room_created(note, room))?;
            }
            Ok(CreateRoomOutcome::Created)
        })?;
        Ok(outcome.unwrap_or_else(|refused| refused))
    }

    fn update_room(
        &self,
        id: &RoomId,
        change: &mut ChangeRoom<'_>,
        note: Option<&OperatorNote>,
    ) -> Result<UpdateRoomOutcome, StoreError> {
        let started = Instant::now();
        let outcome = self.transaction("BEGIN", started, |tx| {
            let row: Option<RoomRow> =
                prepared(ROOM_LOCK).bind::<Text, _>(id.as_str()).get_result(tx.conn()?).optional()?;
            let Some(row) = row else { return Err(Fail::Refuse(UpdateRoomOutcome::NotFound)) };
            let before = row.into_domain()?;
            let mut after = match change(&before) {
                Ok(after) => after,
                Err(e) => return Err(Fail::Refuse(UpdateRoomOutcome::Refused(e))),
            };
            // The id is the row's; a change never moves a room.
            after.id = before.id.clone();
            let values = RoomValues::of(&after)?;
            bind_room!(ROOM_UPDATE, after, values).execute(tx.conn()?)?;
            match list_concerts(tx.conn()?, id.as_str(), &after.concerts, true).map_err(refused)? {
                Some(Conflict::Taken(c)) => return Err(Fail::Refuse(UpdateRoomOutcome::ConcertTaken(c))),
                Some(Conflict::Unknown(c)) => return Err(Fail::Refuse(UpdateRoomOutcome::UnknownConcert(c))),
                None => {}
            }
            if let Some(note) = note {
                crate::audit::write(tx.conn()?, &OperatorAction::room_updated(note, &before, &after))?;
            }
            Ok(UpdateRoomOutcome::Updated { before: Box::new(before), after: Box::new(after) })
        })?;
        Ok(outcome.unwrap_or_else(|refused| refused))
    }
}

/// [`list_concerts`]' failures in a unit of work with another refusal type (it refuses
/// nothing itself).
fn refused<E>(fail: Fail<()>) -> Fail<E> {
    match fail {
        Fail::Db(e) => Fail::Db(e),
        Fail::Store(e) => Fail::Store(e),
        Fail::Refuse(()) => Fail::Store(StoreError::Internal("listing a room's concerts refused itself".into())),
    }
}
