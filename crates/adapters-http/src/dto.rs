//! The JSON shapes of the contract: request bodies (strict: unknown fields are rejected, so a
//! client can never smuggle in a price, a user or a status) and response bodies, each built
//! from a domain value. camelCase, ids as hyphenated UUIDs, times as RFC 3339 UTC, money as
//! integer won.

use domain::account::{LedgerEntry, LedgerKind};
use domain::catalogue::{Concert, ScheduleSummary, SeatStatus, SeatView};
use domain::ids::UserId;
use domain::money::Won;
use domain::payment::Payment;
use domain::queue::{TokenStatus, TokenView};
use domain::reservation::{Reservation, ReservationStatus};
use serde::{Deserialize, Serialize};
use time::{OffsetDateTime, UtcOffset};
use utoipa::ToSchema;
use uuid::Uuid;

fn utc(t: OffsetDateTime) -> OffsetDateTime {
    t.to_offset(UtcOffset::UTC)
}

// ---- requests -------------------------------------------------------------------------------

/// `POST /queue/tokens`.
#[derive(Debug, Clone, Deserialize, Serialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields, expecting = "an object {\"userId\": \"<uuid>\"}")]
pub struct IssueTokenRequest {
    /// Who takes a place in line.
    pub user_id: Uuid,
}

/// `POST /reservations`. The user is the token's; the price is the seat's.
#[derive(Debug, Clone, Deserialize, Serialize, ToSchema)]
#[serde(
    rename_all = "camelCase",
    deny_unknown_fields,
    expecting = "an object {\"scheduleId\": \"<uuid>\", \"seatId\": \"<uuid>\"}"
)]
pub struct ReserveRequest {
    /// The schedule.
    pub schedule_id: Uuid,
    /// A seat of that schedule.
    pub seat_id: Uuid,
}

/// `POST /payments`. The payer is the token's user; the amount is the reservation's price.
#[derive(Debug, Clone, Deserialize, Serialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields, expecting = "an object {\"reservationId\": \"<uuid>\"}")]
pub struct PayRequest {
    /// The reservation to pay.
    pub reservation_id: Uuid,
}

/// `POST /users/{userId}/balance/charge`.
// `amount` is read as any JSON value so that a present but wrong amount (a string, a float, a
// negative or huge number) is answered `INVALID_AMOUNT`, while a missing one or a garbled body
// is `INVALID_REQUEST`; the schema still advertises an integer.
#[derive(Debug, Clone, Deserialize, Serialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields, expecting = "an object {\"amount\": <integer>}")]
pub struct ChargeRequest {
    /// Won to add: an integer in `1..=1_000_000_000`.
    #[schema(value_type = i64, minimum = 1, maximum = 1_000_000_000)]
    pub amount: serde_json::Value,
}

// ---- responses ------------------------------------------------------------------------------

/// A queue token's state as stored, in the contract's spelling.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum TokenStatusDto {
    /// In line.
    Waiting,
    /// Admitted.
    Active,
    /// Used up or timed out.
    Expired,
}

impl From<TokenStatus> for TokenStatusDto {
    fn from(s: TokenStatus) -> Self {
        match s {
            TokenStatus::Waiting => Self::Waiting,
            TokenStatus::Active => Self::Active,
            TokenStatus::Expired => Self::Expired,
        }
    }
}

/// A queue token as the client sees it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct TokenResponse {
    /// The opaque bearer value (64 hex digits).
    pub token: String,
    /// Whose place in line.
    pub user_id: Uuid,
    /// Status as of this response.
    pub status: TokenStatusDto,
    /// 1 + the WAITING tokens issued before it (1 = next); 0 when ACTIVE or EXPIRED.
    pub position: i64,
    /// Estimated seconds until admission; 0 unless WAITING.
    pub estimated_wait_secs: i64,
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
            user_id: v.token.user_id.as_uuid(),
            status: v.status.into(),
            position: v.position,
            estimated_wait_secs: v.estimated_wait_secs,
            issued_at: utc(v.token.issued_at),
            activated_at: v.token.activated_at.map(utc),
            expires_at: v.token.expires_at.map(utc),
        }
    }
}

/// A concert.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct ConcertResponse {
    /// Its id.
    pub id: Uuid,
    /// Its title.
    pub title: String,
    /// Who performs.
    pub artist: String,
    /// Where.
    pub venue: String,
}

impl From<Concert> for ConcertResponse {
    fn from(c: Concert) -> Self {
        Self { id: c.id.as_uuid(), title: c.title, artist: c.artist, venue: c.venue }
    }
}

/// A schedule still open for booking.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
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

/// A seat's status on the seat map.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum SeatStatusDto {
    /// Free.
    Available,
    /// Under an unexpired hold.
    Held,
    /// Paid for.
    Sold,
}

impl From<SeatStatus> for SeatStatusDto {
    fn from(s: SeatStatus) -> Self {
        match s {
            SeatStatus::Available => Self::Available,
            SeatStatus::Held => Self::Held,
            SeatStatus::Sold => Self::Sold,
        }
    }
}

/// One seat of a schedule.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
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
    pub status: SeatStatusDto,
}

impl From<SeatView> for SeatResponse {
    fn from(v: SeatView) -> Self {
        Self {
            id: v.seat.id.as_uuid(),
            schedule_id: v.seat.schedule_id.as_uuid(),
            number: v.seat.number,
            price: v.seat.price.get(),
            status: v.status.into(),
        }
    }
}

/// A reservation's status.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum ReservationStatusDto {
    /// Holding the seat until `heldUntil`.
    Held,
    /// Paid.
    Paid,
    /// The hold lapsed.
    Expired,
}

impl From<ReservationStatus> for ReservationStatusDto {
    fn from(s: ReservationStatus) -> Self {
        match s {
            ReservationStatus::Held => Self::Held,
            ReservationStatus::Paid => Self::Paid,
            ReservationStatus::Expired => Self::Expired,
        }
    }
}

/// A reservation.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
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
    pub status: ReservationStatusDto,
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
            status: r.status.into(),
            held_until: utc(r.held_until),
            created_at: utc(r.created_at),
            paid_at: r.paid_at.map(utc),
        }
    }
}

/// A completed payment.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
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
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
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

/// Why a balance changed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum LedgerKindDto {
    /// Money in.
    Charge,
    /// Money out, for a reservation.
    Payment,
}

impl From<LedgerKind> for LedgerKindDto {
    fn from(k: LedgerKind) -> Self {
        match k {
            LedgerKind::Charge => Self::Charge,
            LedgerKind::Payment => Self::Payment,
        }
    }
}

/// One balance change.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct LedgerEntryResponse {
    /// Its id.
    pub id: Uuid,
    /// Charge or payment.
    pub kind: LedgerKindDto,
    /// Signed change in won: positive for a charge, negative for a payment.
    pub amount: i64,
    /// The balance right after, in won.
    pub balance_after: i64,
    /// When.
    #[serde(with = "time::serde::rfc3339")]
    pub at: OffsetDateTime,
    /// For a payment: the payment.
    pub payment_id: Option<Uuid>,
    /// For a payment: the reservation paid.
    pub reservation_id: Option<Uuid>,
}

impl From<LedgerEntry> for LedgerEntryResponse {
    fn from(e: LedgerEntry) -> Self {
        Self {
            id: e.id.as_uuid(),
            kind: e.kind.into(),
            amount: e.amount.get(),
            balance_after: e.balance_after.get(),
            at: utc(e.at),
            payment_id: e.payment_id.map(|p| p.as_uuid()),
            reservation_id: e.reservation_id.map(|r| r.as_uuid()),
        }
    }
}

/// A health check's answer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct HealthResponse {
    /// `ok` (live) or `ready` (ready).
    pub status: String,
}
