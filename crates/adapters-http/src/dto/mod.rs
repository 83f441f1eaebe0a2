//! Request bodies (exactly the fields a client may send: they never smuggle in a price, a user or
//! a status) and response bodies, each built from a domain value. camelCase, ids as lower-case
//! hyphenated UUIDs, times as RFC 3339 UTC, money as integer won. Domain enums go on the wire
//! through [`crate::wire`], never through a hand-written mirror.

use domain::account::{LedgerEntry, LedgerKind, LedgerPage};
use domain::audit::{AuditEntry, AuditPage};
use domain::catalogue::{
    Concert, ConcertDraft, NewConcert, NewSchedule, ScheduleDraft, ScheduleSales, ScheduleSummary, SeatDraft,
    SeatStatus, SeatView,
};
use domain::ids::UserId;
use domain::money::Won;
use domain::payment::Payment;
use domain::queue::{ExpiredReason, QueueState, TokenStatus, TokenView};
use domain::reservation::{Reservation, ReservationStatus};
use serde::{Deserialize, Deserializer, Serialize};
use time::OffsetDateTime;
use utoipa::ToSchema;
use uuid::Uuid;

use crate::wire::{self, utc, CanonicalUuid};

mod rooms;

pub use rooms::{
    CreateRoomRequest, DrawResponse, RoomAdminResponse, RoomHistoryResponse, RoomResponse, RoomSampleResponse,
    UpdateRoomRequest,
};

// ---- requests -------------------------------------------------------------------------------

/// `POST /queue/tokens`.
#[derive(Debug, Clone, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields, expecting = "an object {\"userId\": \"<uuid>\"}")]
#[schema(example = json!({"userId": "6a1f1d52-3d43-4d4b-9a55-2f6c3f1e0b7a"}))]
pub struct IssueTokenRequest {
    /// Who takes a place in line. Required with identity off; with identity on (`AUTH_ISSUER`)
    /// it may be left out (the signed-in user), and if given must be that user (403 otherwise).
    #[serde(default, deserialize_with = "present_uuid")]
    #[schema(value_type = CanonicalUuid, required = true)]
    pub user_id: Option<CanonicalUuid>,
    /// The room to wait in (`GET /rooms`); `main` when absent.
    #[schema(pattern = r"^[a-z0-9][a-z0-9-]{0,62}$", example = "main")]
    pub room_id: Option<String>,
}

/// A field that may be absent but, when present, is a UUID in the contract's form (never null).
pub(crate) fn present_uuid<'de, D: Deserializer<'de>>(d: D) -> Result<Option<CanonicalUuid>, D::Error> {
    CanonicalUuid::deserialize(d).map(Some)
}

/// `POST /reservations`. The user is the token's; the price is the seat's.
#[derive(Debug, Clone, Deserialize, ToSchema)]
#[serde(
    rename_all = "camelCase",
    deny_unknown_fields,
    expecting = "an object {\"scheduleId\": \"<uuid>\", \"seatId\": \"<uuid>\"}"
)]
pub struct ReserveRequest {
    /// The schedule.
    pub schedule_id: CanonicalUuid,
    /// A seat of that schedule.
    pub seat_id: CanonicalUuid,
}

/// `POST /payments`. The payer is the token's user; the amount is the reservation's price.
#[derive(Debug, Clone, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields, expecting = "an object {\"reservationId\": \"<uuid>\"}")]
pub struct PayRequest {
    /// The reservation to pay.
    pub reservation_id: CanonicalUuid,
}

/// `POST /users/{userId}/balance/charge`.
// `amount` is read as any JSON value so that a present but wrong amount (a string, a float, a
// negative or huge number) is answered `INVALID_AMOUNT`, while a missing one or a garbled body
// is `INVALID_REQUEST`; the schema still advertises an integer.
#[derive(Debug, Clone, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields, expecting = "an object {\"amount\": <integer>}")]
#[schema(example = json!({"amount": 50000}))]
pub struct ChargeRequest {
    /// Won to add: an integer in `1..=1_000_000_000`.
    #[schema(value_type = i64)]
    pub amount: serde_json::Value,
}

/// Reads a field that is present (possibly `null`) as `Some`; an absent field stays `None`
/// through `#[serde(default)]`. Tells "lift the cap" (`null`) from "leave it" (absent).
pub(crate) fn present<'de, D: Deserializer<'de>, T: Deserialize<'de>>(d: D) -> Result<Option<T>, D::Error> {
    T::deserialize(d).map(Some)
}

/// `PATCH /admin/queue`: any of the settings; absent ones stay as they are.
#[derive(Debug, Clone, Default, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields, expecting = "an object of queue settings")]
#[schema(example = json!({"admitBatch": 200, "admitIntervalSecs": 30}))]
pub struct QueuePatchRequest {
    /// `true` stops admission (tokens are still issued and polled); `false` resumes it.
    pub paused: Option<bool>,
    /// N: most tokens one admission tick activates, `1..=100000`.
    pub admit_batch: Option<i64>,
    /// M: seconds between admission ticks, `1..=86400`.
    pub admit_interval_secs: Option<i64>,
    /// Seconds an ACTIVE token stays valid, `10..=86400` (for tokens admitted after the change).
    pub active_ttl_secs: Option<i64>,
    /// Most ACTIVE tokens at once, `1..=10000000`; `null` lifts the cap.
    #[serde(default, deserialize_with = "present")]
    #[schema(value_type = Option<i64>, nullable)]
    pub max_active: Option<Option<i64>>,
}

/// A seat of a new schedule.
#[derive(Debug, Clone, Copy, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields, expecting = "an object {\"number\", \"price\"}")]
pub struct SeatRequest {
    /// Its number, `1..=1000000`, unique in the schedule.
    pub number: i64,
    /// Its price in won, `1..=100000000`.
    pub price: i64,
}

/// A new schedule with its seats (`POST /admin/concerts/{concertId}/schedules`, and inside a
/// new concert).
#[derive(Debug, Clone, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields, expecting = "an object {\"startsAt\", \"seats\"}")]
#[schema(example = json!({"startsAt": "2030-06-01T19:00:00Z", "seats": [{"number": 1, "price": 50000}]}))]
pub struct ScheduleRequest {
    /// When it starts: in the future.
    #[serde(with = "time::serde::rfc3339")]
    pub starts_at: OffsetDateTime,
    /// 1 to 5000 seats.
    pub seats: Vec<SeatRequest>,
}

/// `POST /admin/concerts`.
#[derive(Debug, Clone, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields, expecting = "an object {\"title\", \"schedules\"}")]
#[schema(example = json!({
    "title": "Midsummer Night",
    "artist": "The Band",
    "venue": "Olympic Hall",
    "schedules": [{"startsAt": "2030-06-01T19:00:00Z", "seats": [{"number": 1, "price": 50000}]}]
}))]
pub struct ConcertRequest {
    /// 1 to 200 characters.
    pub title: String,
    /// Who performs (optional, up to 200 characters).
    #[serde(default)]
    pub artist: String,
    /// Where (optional, up to 200 characters).
    #[serde(default)]
    pub venue: String,
    /// 0 to 20 schedules, at most 50,000 seats in all.
    #[serde(default)]
    pub schedules: Vec<ScheduleRequest>,
}

impl From<&ScheduleRequest> for ScheduleDraft {
    fn from(r: &ScheduleRequest) -> Self {
        Self {
            starts_at: r.starts_at,
            seats: r.seats.iter().map(|s| SeatDraft { number: s.number, price: s.price }).collect(),
        }
    }
}

impl From<&ConcertRequest> for ConcertDraft {
    fn from(r: &ConcertRequest) -> Self {
        Self {
            title: r.title.clone(),
            artist: r.artist.clone(),
            venue: r.venue.clone(),
            schedules: r.schedules.iter().map(ScheduleDraft::from).collect(),
        }
    }
}

// ---- responses ------------------------------------------------------------------------------

/// A queue token as its holder sees it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
#[schema(example = json!({
    "token": "9f2c0c7e4b1a5d3e8f6a7b9c0d1e2f3a4b5c6d7e8f9a0b1c2d3e4f5a6b7c8d9e", "roomId": "main",
    "userId": "6a1f1d52-3d43-4d4b-9a55-2f6c3f1e0b7a",
    "status": "WAITING", "position": 42, "estimatedWaitSecs": 120, "paused": false, "pollAfterSecs": 20,
    "drawAt": null, "expiredReason": null,
    "issuedAt": "2030-01-01T00:00:00Z", "activatedAt": null, "expiresAt": null
}))]
pub struct TokenResponse {
    /// The opaque bearer value (64 hex digits, after `<roomId>.` for a room other than
    /// `main`).
    pub token: String,
    /// The room it waits in.
    pub room_id: String,
    /// Whose place in line.
    pub user_id: Uuid,
    /// Status as of this response.
    #[serde(serialize_with = "wire::as_str")]
    #[schema(schema_with = wire::enum_schema::<TokenStatus>)]
    pub status: TokenStatus,
    /// 1 + the WAITING tokens issued before it (1 = next); 0 when ACTIVE or EXPIRED; `null`
    /// while the room's order is still to be drawn (see `drawAt`).
    pub position: Option<i64>,
    /// Estimated seconds until admission; 0 unless WAITING; `null` before the draw.
    pub estimated_wait_secs: Option<i64>,
    /// While the token waits in a room's pre-queue: when the order is drawn (the opening);
    /// `null` otherwise.
    #[serde(with = "time::serde::rfc3339::option")]
    pub draw_at: Option<OffsetDateTime>,
    /// Why the token is EXPIRED (`TTL`, `PAID`, `ABANDONED`); `null` while it is not.
    #[serde(serialize_with = "wire::as_opt_str")]
    #[schema(schema_with = wire::nullable_enum_schema::<ExpiredReason>)]
    pub expired_reason: Option<ExpiredReason>,
    /// Whether an operator paused admission.
    pub paused: bool,
    /// When to poll again, in seconds (0: no need, the token is no longer WAITING).
    pub poll_after_secs: i64,
    /// When the token was issued.
    #[serde(with = "time::serde::rfc3339")]
    pub issued_at: OffsetDateTime,
    /// When it was admitted.
    #[serde(with = "time::serde::rfc3339::option")]
    pub activated_at: Option<OffsetDateTime>,
    /// When an admitted token stops being valid.
    #[serde(with = "time::serde::rfc3339::option")]
    pub expires_at: Option<OffsetDateTime>,
}

impl From<TokenView> for TokenResponse {
    fn from(v: TokenView) -> Self {
        Self {
            token: v.token.value.as_str().to_owned(),
            room_id: v.token.value.room().to_string(),
            user_id: v.token.user_id.as_uuid(),
            status: v.status,
            position: v.draw_at.is_none().then_some(v.position),
            estimated_wait_secs: v.draw_at.is_none().then_some(v.estimated_wait_secs),
            draw_at: v.draw_at.map(utc),
            expired_reason: v.expired_reason,
            paused: v.paused,
            poll_after_secs: v.poll_after_secs,
            issued_at: utc(v.token.issued_at),
            activated_at: v.token.activated_at.map(utc),
            expires_at: v.token.expires_at.map(utc),
        }
    }
}

/// A concert.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct ConcertResponse {
    /// Its id.
    pub id: Uuid,
    /// Its title.
    pub title: String,
    /// Who performs (may be empty).
    pub artist: String,
    /// Where (may be empty).
    pub venue: String,
}

impl From<Concert> for ConcertResponse {
    fn from(c: Concert) -> Self {
        Self { id: c.id.as_uuid(), title: c.title, artist: c.artist, venue: c.venue }
    }
}

/// A schedule still open for booking.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct ScheduleResponse {
    /// Its id.
    pub id: Uuid,
    /// Its concert.
    pub concert_id: Uuid,
    /// When it starts.
    #[serde(with = "time::serde::rfc3339")]
    pub starts_at: OffsetDateTime,
    /// Seats in all.
    pub total_seats: u32,
    /// Seats neither sold nor under an unexpired hold.
    pub available_seats: u32,
}

impl From<ScheduleSummary> for ScheduleResponse {
    fn from(s: ScheduleSummary) -> Self {
        Self {
            id: s.id.as_uuid(),
            concert_id: s.concert_id.as_uuid(),
            starts_at: utc(s.starts_at),
            total_seats: s.total_seats,
            available_seats: s.available_seats,
        }
    }
}

/// One seat of a schedule.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct SeatResponse {
    /// Its id.
    pub id: Uuid,
    /// Its schedule.
    pub schedule_id: Uuid,
    /// Its number, 1-based.
    pub number: u32,
    /// Its price in won.
    pub price: i64,
    /// Its status as of this response.
    #[serde(serialize_with = "wire::as_str")]
    #[schema(schema_with = wire::enum_schema::<SeatStatus>)]
    pub status: SeatStatus,
}

impl From<SeatView> for SeatResponse {
    fn from(v: SeatView) -> Self {
        Self {
            id: v.seat.id.as_uuid(),
            schedule_id: v.seat.schedule_id.as_uuid(),
            number: v.seat.number,
            price: v.seat.price.get(),
            status: v.status,
        }
    }
}

/// A reservation.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct ReservationResponse {
    /// Its id.
    pub id: Uuid,
    /// The holder (the token's user).
    pub user_id: Uuid,
    /// The schedule.
    pub schedule_id: Uuid,
    /// The seat.
    pub seat_id: Uuid,
    /// The seat's number.
    pub seat_number: u32,
    /// The price in won, fixed when the hold was made.
    pub price: i64,
    /// Status as of this response.
    #[serde(serialize_with = "wire::as_str")]
    #[schema(schema_with = wire::enum_schema::<ReservationStatus>)]
    pub status: ReservationStatus,
    /// When the hold lapses if unpaid.
    #[serde(with = "time::serde::rfc3339")]
    pub held_until: OffsetDateTime,
    /// When it was made.
    #[serde(with = "time::serde::rfc3339")]
    pub created_at: OffsetDateTime,
    /// When it was paid.
    #[serde(with = "time::serde::rfc3339::option")]
    pub paid_at: Option<OffsetDateTime>,
}

impl From<Reservation> for ReservationResponse {
    fn from(r: Reservation) -> Self {
        Self {
            id: r.id.as_uuid(),
            user_id: r.user_id.as_uuid(),
            schedule_id: r.schedule_id.as_uuid(),
            seat_id: r.seat_id.as_uuid(),
            seat_number: r.seat_number,
            price: r.price.get(),
            status: r.status,
            held_until: utc(r.held_until),
            created_at: utc(r.created_at),
            paid_at: r.paid_at.map(utc),
        }
    }
}

/// A completed payment.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct PaymentResponse {
    /// Its id.
    pub id: Uuid,
    /// What was paid.
    pub reservation_id: Uuid,
    /// Who paid.
    pub user_id: Uuid,
    /// Won paid.
    pub amount: i64,
    /// The payer's balance right after, in won.
    pub balance: i64,
    /// When.
    #[serde(with = "time::serde::rfc3339")]
    pub paid_at: OffsetDateTime,
}

impl From<Payment> for PaymentResponse {
    fn from(p: Payment) -> Self {
        Self {
            id: p.id.as_uuid(),
            reservation_id: p.reservation_id.as_uuid(),
            user_id: p.user_id.as_uuid(),
            amount: p.amount.get(),
            balance: p.balance_after.get(),
            paid_at: utc(p.paid_at),
        }
    }
}

/// A balance.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct BalanceResponse {
    /// Whose.
    pub user_id: Uuid,
    /// Won.
    pub balance: i64,
}

impl BalanceResponse {
    /// The balance of `user`.
    #[must_use]
    pub fn new(user: UserId, balance: Won) -> Self {
        Self { user_id: user.as_uuid(), balance: balance.get() }
    }
}

/// One balance change.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct LedgerEntryResponse {
    /// Its id (pass it as `before` for older entries).
    pub id: Uuid,
    /// Charge or payment.
    #[serde(serialize_with = "wire::as_str")]
    #[schema(schema_with = wire::enum_schema::<LedgerKind>)]
    pub kind: LedgerKind,
    /// Signed change in won: positive for a charge, negative for a payment.
    pub amount: i64,
    /// The balance right after, in won.
    pub balance_after: i64,
    /// When.
    #[serde(with = "time::serde::rfc3339")]
    pub at: OffsetDateTime,
    /// For a payment: the reservation paid; `null` for a charge.
    pub reservation_id: Option<Uuid>,
}

impl From<LedgerEntry> for LedgerEntryResponse {
    fn from(e: LedgerEntry) -> Self {
        Self {
            id: e.id.as_uuid(),
            kind: e.kind,
            amount: e.amount.get(),
            balance_after: e.balance_after.get(),
            at: utc(e.at),
            reservation_id: e.reservation_id.map(|r| r.as_uuid()),
        }
    }
}

/// One page of a balance history, newest first.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct HistoryResponse {
    /// The entries, newest first.
    pub entries: Vec<LedgerEntryResponse>,
    /// Pass as `before` for the next (older) page; `null` on the last page.
    pub next_before: Option<Uuid>,
}

impl From<LedgerPage> for HistoryResponse {
    fn from(p: LedgerPage) -> Self {
        Self {
            entries: p.entries.into_iter().map(LedgerEntryResponse::from).collect(),
            next_before: p.next_before.map(|id| id.as_uuid()),
        }
    }
}

/// A health check's answer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, ToSchema)]
pub struct HealthResponse {
    /// `ok` (live) or `ready` (ready).
    pub status: String,
}

/// The waiting room for an operator (`GET`/`PATCH /admin/queue`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct QueueStateResponse {
    /// WAITING tokens.
    pub waiting: u64,
    /// Unexpired ACTIVE tokens.
    pub active: u64,
    /// Position number of the last token issued.
    pub issued_through: i64,
    /// Position number of the last token admitted.
    pub admitted_through: i64,
    /// When the last admission that admitted anybody ran.
    #[serde(with = "time::serde::rfc3339::option")]
    pub last_admission_at: Option<OffsetDateTime>,
    /// The earliest time of the next admission; `null` while paused.
    #[serde(with = "time::serde::rfc3339::option")]
    pub next_admission_at: Option<OffsetDateTime>,
    /// Whether admission is paused.
    pub paused: bool,
    /// N.
    pub admit_batch: u32,
    /// M, in seconds.
    pub admit_interval_secs: i64,
    /// How long an ACTIVE token stays valid, in seconds.
    pub active_ttl_secs: i64,
    /// The cap on ACTIVE tokens; `null` when there is none.
    pub max_active: Option<u32>,
}

impl From<QueueState> for QueueStateResponse {
    fn from(s: QueueState) -> Self {
        let a = s.settings.admission;
        Self {
            waiting: s.stats.waiting,
            active: s.stats.active,
            issued_through: s.stats.issued_through,
            admitted_through: s.stats.cursor.admitted_through,
            last_admission_at: s.stats.cursor.last_admission_at.map(utc),
            next_admission_at: s.next_admission_at.map(utc),
            paused: s.settings.paused,
            admit_batch: a.batch,
            admit_interval_secs: a.interval.whole_seconds(),
            active_ttl_secs: a.active_ttl.whole_seconds(),
            max_active: a.max_active,
        }
    }
}

/// A schedule just created.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct NewScheduleResponse {
    /// Its id.
    pub id: Uuid,
    /// Its concert.
    pub concert_id: Uuid,
    /// When it starts.
    #[serde(with = "time::serde::rfc3339")]
    pub starts_at: OffsetDateTime,
    /// Its seats.
    pub total_seats: u32,
}

impl From<&NewSchedule> for NewScheduleResponse {
    fn from(s: &NewSchedule) -> Self {
        Self {
            id: s.id.as_uuid(),
            concert_id: s.concert_id.as_uuid(),
            starts_at: utc(s.starts_at),
            total_seats: u32::try_from(s.seats.len()).unwrap_or(u32::MAX),
        }
    }
}

/// A concert just created, with its schedules.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct NewConcertResponse {
    /// Its id.
    pub id: Uuid,
    /// Its title.
    pub title: String,
    /// Who performs.
    pub artist: String,
    /// Where.
    pub venue: String,
    /// Its schedules.
    pub schedules: Vec<NewScheduleResponse>,
}

impl From<&NewConcert> for NewConcertResponse {
    fn from(c: &NewConcert) -> Self {
        Self {
            id: c.concert.id.as_uuid(),
            title: c.concert.title.clone(),
            artist: c.concert.artist.clone(),
            venue: c.concert.venue.clone(),
            schedules: c.schedules.iter().map(NewScheduleResponse::from).collect(),
        }
    }
}

/// One schedule's sales.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct SalesResponse {
    /// The schedule.
    pub schedule_id: Uuid,
    /// When it starts.
    #[serde(with = "time::serde::rfc3339")]
    pub starts_at: OffsetDateTime,
    /// Its seats.
    pub total_seats: u32,
    /// Seats paid for.
    pub sold: u32,
    /// Seats under an unexpired hold.
    pub held: u32,
    /// The rest.
    pub available: u32,
    /// Won paid for its seats.
    pub revenue: i64,
}

impl From<ScheduleSales> for SalesResponse {
    fn from(s: ScheduleSales) -> Self {
        Self {
            schedule_id: s.schedule_id.as_uuid(),
            starts_at: utc(s.starts_at),
            total_seats: s.total_seats,
            sold: s.sold,
            held: s.held,
            available: s.available,
            revenue: s.revenue.get(),
        }
    }
}

/// One line of the operator log.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
#[schema(example = json!({
    "seq": 7, "at": "2030-06-01T18:00:00Z", "actor": "0347f1ea", "action": "queue.update", "target": "main",
    "before": "paused=false batch=100 interval=60s ttl=600s max_active=none",
    "after": "paused=true batch=100 interval=60s ttl=600s max_active=none"
}))]
pub struct AuditEntryResponse {
    /// Its number: increasing in the order the changes committed; pass as `before` to page.
    pub seq: i64,
    /// When the change was made.
    #[serde(with = "time::serde::rfc3339")]
    pub at: OffsetDateTime,
    /// Who made it: the first 8 hex digits of the SHA-256 of the operator token.
    pub actor: String,
    /// `queue.update`, `concert.create` or `schedule.create`.
    pub action: String,
    /// What it changed: `main` (the waiting room), a concert's or a schedule's id.
    pub target: String,
    /// The state it replaced, in one line; `null` for a creation.
    pub before: Option<String>,
    /// The state it made, in one line.
    pub after: String,
}

impl From<AuditEntry> for AuditEntryResponse {
    fn from(e: AuditEntry) -> Self {
        let a = e.action;
        Self {
            seq: e.seq,
            at: utc(a.at),
            actor: a.actor,
            action: a.action.as_str().to_owned(),
            target: a.target,
            before: a.before,
            after: a.after,
        }
    }
}

/// One page of the operator log, newest first (`GET /admin/audit`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct AuditResponse {
    /// The lines, newest first.
    pub entries: Vec<AuditEntryResponse>,
    /// Pass as `before` for the next (older) page; `null` on the last page.
    pub next_before: Option<i64>,
}

impl From<AuditPage> for AuditResponse {
    fn from(p: AuditPage) -> Self {
        Self { entries: p.entries.into_iter().map(AuditEntryResponse::from).collect(), next_before: p.next_before }
    }
}
