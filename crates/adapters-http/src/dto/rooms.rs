//! The rooms on the wire: a room as buyers see it (`GET /rooms`), as an operator sees it
//! (`/admin/rooms`), and the operator's requests.

use domain::ids::ConcertId;
use domain::queue::SettingsChange;
use domain::room::{RoomChange, RoomDraft, RoomState};
use domain::service::RoomView;
use serde::{Deserialize, Deserializer, Serialize};
use time::OffsetDateTime;
use utoipa::ToSchema;
use uuid::Uuid;

use super::present;
use crate::wire::{self, utc, CanonicalUuid};

/// A time on the wire, RFC 3339.
#[derive(Debug, Clone, Copy, Deserialize)]
#[serde(transparent)]
pub struct Rfc3339(#[serde(with = "time::serde::rfc3339")] pub OffsetDateTime);

fn present_time<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Option<OffsetDateTime>>, D::Error> {
    present::<D, Option<Rfc3339>>(d).map(|t| t.map(|t| t.map(|t| t.0)))
}

fn some_time<'de, D: Deserializer<'de>>(d: D) -> Result<Option<OffsetDateTime>, D::Error> {
    Rfc3339::deserialize(d).map(|t| Some(t.0))
}

fn concert_ids(ids: &[CanonicalUuid]) -> Vec<ConcertId> {
    ids.iter().map(|id| ConcertId::from_uuid(id.0)).collect()
}

/// `POST /admin/rooms`: a new room; absent settings default to the service's starting ones.
#[derive(Debug, Clone, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields, expecting = "an object describing a room")]
#[schema(example = json!({
    "id": "stadium-tour", "name": "Stadium tour, first night", "concertIds": [],
    "opensAt": "2030-06-01T10:00:00Z", "prequeueOpensAt": "2030-06-01T09:30:00Z",
    "abandonAfterSecs": 300, "admitBatch": 500, "admitIntervalSecs": 30
}))]
pub struct CreateRoomRequest {
    /// The room's id, a slug `^[a-z0-9][a-z0-9-]{0,62}$`, chosen by the operator.
    #[schema(pattern = r"^[a-z0-9][a-z0-9-]{0,62}$")]
    pub id: String,
    /// What buyers see, 1 to 200 characters.
    pub name: String,
    /// The concerts the room sells (each must be in no other room but `main`).
    pub concert_ids: Vec<CanonicalUuid>,
    /// When the room opens (admission starts); in the future. Absent: open from creation.
    #[serde(default, deserialize_with = "some_time")]
    #[schema(value_type = Option<String>, format = DateTime)]
    pub opens_at: Option<OffsetDateTime>,
    /// When joining opens, before `opensAt` (needs it); may have passed already.
    #[serde(default, deserialize_with = "some_time")]
    #[schema(value_type = Option<String>, format = DateTime)]
    pub prequeue_opens_at: Option<OffsetDateTime>,
    /// Draw the pre-queue's order at the opening (default: true with a pre-queue).
    pub draw_at_open: Option<bool>,
    /// Seconds a WAITING buyer keeps their place without polling: 0 (for ever, the default)
    /// or 30..=86400.
    pub abandon_after_secs: Option<i64>,
    /// N, `1..=100000`.
    pub admit_batch: Option<i64>,
    /// M in seconds, `1..=86400`.
    pub admit_interval_secs: Option<i64>,
    /// Seconds an ACTIVE token stays valid, `10..=86400`.
    pub active_ttl_secs: Option<i64>,
    /// Most ACTIVE tokens at once, `1..=10000000`; `null` or absent: no cap.
    #[serde(default, deserialize_with = "present")]
    #[schema(value_type = Option<i64>, nullable)]
    pub max_active: Option<Option<i64>>,
}

impl From<&CreateRoomRequest> for RoomDraft {
    fn from(r: &CreateRoomRequest) -> Self {
        Self {
            id: r.id.clone(),
            name: r.name.clone(),
            concerts: concert_ids(&r.concert_ids),
            opens_at: r.opens_at,
            prequeue_opens_at: r.prequeue_opens_at,
            draw_at_open: r.draw_at_open,
            abandon_after_secs: r.abandon_after_secs,
            settings: SettingsChange {
                paused: None,
                admit_batch: r.admit_batch,
                admit_interval_secs: r.admit_interval_secs,
                active_ttl_secs: r.active_ttl_secs,
                max_active: r.max_active,
            },
        }
    }
}

/// `PATCH /admin/rooms/{roomId}`: any of the fields; absent ones stay as they are. `opensAt`,
/// `prequeueOpensAt` and `drawAtOpen` change only before the opening.
#[derive(Debug, Clone, Default, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields, expecting = "an object of room fields")]
#[schema(example = json!({"paused": true}))]
pub struct UpdateRoomRequest {
    /// A new name, 1 to 200 characters.
    pub name: Option<String>,
    /// The concerts from now on: added ones must come from `main`, removed ones go back to it.
    pub concert_ids: Option<Vec<CanonicalUuid>>,
    /// A new opening, in the future; `null` removes it.
    #[serde(default, deserialize_with = "present_time")]
    #[schema(value_type = Option<String>, format = DateTime, nullable)]
    pub opens_at: Option<Option<OffsetDateTime>>,
    /// A new pre-queue opening; `null` removes the pre-queue.
    #[serde(default, deserialize_with = "present_time")]
    #[schema(value_type = Option<String>, format = DateTime, nullable)]
    pub prequeue_opens_at: Option<Option<OffsetDateTime>>,
    /// Draw the pre-queue's order at the opening.
    pub draw_at_open: Option<bool>,
    /// 0 (never) or 30..=86400.
    pub abandon_after_secs: Option<i64>,
    /// `true` closes the room to new joiners; `false` reopens it.
    pub closed: Option<bool>,
    /// `true` stops admission; `false` resumes it.
    pub paused: Option<bool>,
    /// N, `1..=100000`.
    pub admit_batch: Option<i64>,
    /// M in seconds, `1..=86400`.
    pub admit_interval_secs: Option<i64>,
    /// Seconds an ACTIVE token stays valid, `10..=86400`.
    pub active_ttl_secs: Option<i64>,
    /// Most ACTIVE tokens at once, `1..=10000000`; `null` lifts the cap.
    #[serde(default, deserialize_with = "present")]
    #[schema(value_type = Option<i64>, nullable)]
    pub max_active: Option<Option<i64>>,
}

impl From<&UpdateRoomRequest> for RoomChange {
    fn from(r: &UpdateRoomRequest) -> Self {
        Self {
            name: r.name.clone(),
            concerts: r.concert_ids.as_deref().map(concert_ids),
            opens_at: r.opens_at,
            prequeue_opens_at: r.prequeue_opens_at,
            draw_at_open: r.draw_at_open,
            abandon_after_secs: r.abandon_after_secs,
            closed: r.closed,
            settings: SettingsChange {
                paused: r.paused,
                admit_batch: r.admit_batch,
                admit_interval_secs: r.admit_interval_secs,
                active_ttl_secs: r.active_ttl_secs,
                max_active: r.max_active,
            },
        }
    }
}

/// A room as buyers see it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct RoomResponse {
    /// Its id: send it as `roomId` to `POST /queue/tokens`.
    pub id: String,
    /// Its name.
    pub name: String,
    /// The concerts it sells (`main`: every concert of no other room; listed empty).
    pub concert_ids: Vec<Uuid>,
    /// `SCHEDULED`, `PREQUEUE`, `OPEN`, `PAUSED` or `CLOSED`, on the store's clock.
    #[serde(serialize_with = "wire::as_str")]
    #[schema(schema_with = wire::enum_schema::<RoomState>)]
    pub state: RoomState,
    /// When it opens; `null` for a room open from its creation.
    #[serde(with = "time::serde::rfc3339::option")]
    pub opens_at: Option<OffsetDateTime>,
    /// When joining opens, before `opensAt`; `null` without a pre-queue.
    #[serde(with = "time::serde::rfc3339::option")]
    pub prequeue_opens_at: Option<OffsetDateTime>,
    /// WAITING tokens.
    pub waiting: u64,
    /// The wait of someone joining now, in seconds; `null` before the draw.
    pub estimated_wait_secs: Option<i64>,
}

impl From<&RoomView> for RoomResponse {
    fn from(v: &RoomView) -> Self {
        Self {
            id: v.room.id.to_string(),
            name: v.room.name.clone(),
            concert_ids: v.room.concerts.iter().map(|c| c.as_uuid()).collect(),
            state: v.state,
            opens_at: v.room.opens_at.map(utc),
            prequeue_opens_at: v.room.prequeue_opens_at.map(utc),
            waiting: v.stats.waiting,
            estimated_wait_secs: v.estimated_wait_secs,
        }
    }
}

/// A room's draw: when, over how many pre-queued tokens, from which seed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct DrawResponse {
    /// When it ran (the store's clock).
    #[serde(with = "time::serde::rfc3339")]
    pub at: OffsetDateTime,
    /// How many pre-queued tokens it ordered (positions 1..=entrants).
    pub entrants: u64,
    /// The seed (below 2^53, exact as a JSON number): `concert draw-order` recomputes the order.
    pub seed: u64,
}

/// A room as an operator sees it: settings, state and its line's figures.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct RoomAdminResponse {
    /// Its id.
    pub id: String,
    /// Its name.
    pub name: String,
    /// The concerts it sells.
    pub concert_ids: Vec<Uuid>,
    /// Its state now.
    #[serde(serialize_with = "wire::as_str")]
    #[schema(schema_with = wire::enum_schema::<RoomState>)]
    pub state: RoomState,
    /// When it opens.
    #[serde(with = "time::serde::rfc3339::option")]
    pub opens_at: Option<OffsetDateTime>,
    /// When joining opens.
    #[serde(with = "time::serde::rfc3339::option")]
    pub prequeue_opens_at: Option<OffsetDateTime>,
    /// Whether the pre-queue's order is drawn at the opening.
    pub draw_at_open: bool,
    /// Seconds a WAITING buyer keeps their place without polling; 0: for ever.
    pub abandon_after_secs: i64,
    /// Whether admission is paused.
    pub paused: bool,
    /// Whether the room is closed to new joiners.
    pub closed: bool,
    /// N.
    pub admit_batch: u32,
    /// M, in seconds.
    pub admit_interval_secs: i64,
    /// How long an ACTIVE token stays valid, in seconds.
    pub active_ttl_secs: i64,
    /// The cap on ACTIVE tokens; `null` when there is none.
    pub max_active: Option<u32>,
    /// WAITING tokens.
    pub waiting: u64,
    /// Unexpired ACTIVE tokens.
    pub active: u64,
    /// Position number of the last token issued.
    pub issued_through: i64,
    /// Position number of the last token admitted or skipped.
    pub admitted_through: i64,
    /// Tokens skipped at their turn because their buyer had left.
    pub abandoned: u64,
    /// When the last admission that admitted anybody ran.
    #[serde(with = "time::serde::rfc3339::option")]
    pub last_admission_at: Option<OffsetDateTime>,
    /// The earliest time of the next admission; `null` while paused.
    #[serde(with = "time::serde::rfc3339::option")]
    pub next_admission_at: Option<OffsetDateTime>,
    /// The draw, once made.
    pub draw: Option<DrawResponse>,
}

impl From<&RoomView> for RoomAdminResponse {
    fn from(v: &RoomView) -> Self {
        let (room, stats, a) = (&v.room, &v.stats, &v.room.settings.admission);
        Self {
            id: room.id.to_string(),
            name: room.name.clone(),
            concert_ids: room.concerts.iter().map(|c| c.as_uuid()).collect(),
            state: v.state,
            opens_at: room.opens_at.map(utc),
            prequeue_opens_at: room.prequeue_opens_at.map(utc),
            draw_at_open: room.draw_at_open,
            abandon_after_secs: room.abandon_after.map_or(0, time::Duration::whole_seconds),
            paused: room.settings.paused,
            closed: room.closed,
            admit_batch: a.batch,
            admit_interval_secs: a.interval.whole_seconds(),
            active_ttl_secs: a.active_ttl.whole_seconds(),
            max_active: a.max_active,
            waiting: stats.waiting,
            active: stats.active,
            issued_through: stats.issued_through,
            admitted_through: stats.cursor.admitted_through,
            abandoned: stats.abandoned,
            last_admission_at: stats.cursor.last_admission_at.map(utc),
            next_admission_at: v.next_admission_at.map(utc),
            draw: stats.cursor.draw.map(|d| DrawResponse { at: utc(d.at), entrants: d.entrants, seed: d.seed }),
        }
    }
}

/// One sample of a room's figures in the console's history.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct RoomSampleResponse {
    /// When the store read them (its clock).
    #[serde(with = "time::serde::rfc3339")]
    pub at: OffsetDateTime,
    /// WAITING tokens.
    pub waiting: u64,
    /// Unexpired ACTIVE tokens.
    pub active: u64,
    /// Position number of the last token admitted or skipped (cumulative: admitted per minute
    /// is its difference between samples).
    pub admitted_through: i64,
    /// Places skipped because their buyer had left, ever (cumulative).
    pub abandoned: u64,
}

impl From<&crate::history::Sample> for RoomSampleResponse {
    fn from(s: &crate::history::Sample) -> Self {
        Self {
            at: utc(s.at),
            waiting: s.waiting,
            active: s.active,
            admitted_through: s.admitted_through,
            abandoned: s.abandoned,
        }
    }
}

/// `GET /admin/rooms/{roomId}/history`: a room's recent figures as one instance sampled them.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct RoomHistoryResponse {
    /// The room.
    pub room_id: String,
    /// The instance whose memory holds these samples (host name and process id): another
    /// instance answers its own.
    pub instance: String,
    /// Seconds between samples.
    pub interval_secs: u64,
    /// Most samples kept (the window is `intervalSecs × capacity`).
    pub capacity: usize,
    /// The samples, oldest first; empty until the first sample of the room.
    pub samples: Vec<RoomSampleResponse>,
}
