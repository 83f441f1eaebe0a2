//! One error enum per use case. Each variant is one `code` of the public contract (see
//! `docs/api.md`); `Store` carries a failure of the store itself (503 when it is unreachable or
//! gave up waiting, 500 otherwise). The HTTP adapter maps them in exactly one place.

use thiserror::Error;

use crate::catalogue::InvalidCatalogue;
use crate::money::Won;
use crate::queue::InvalidSetting;
use crate::room::{InvalidRoom, RoomId};
use time::OffsetDateTime;

/// A failure of the store itself, not of a business rule. In every case nothing was changed:
/// stores roll back the whole unit of work before returning one.
#[derive(Debug, Clone, PartialEq, Eq, Error, strum::IntoStaticStr, strum::VariantNames)]
#[strum(serialize_all = "snake_case")]
pub enum StoreError {
    /// The store cannot be reached (down, connection lost, no connection free in time).
    /// Retrying later may work. The text is for logs only, never for clients.
    #[error("store unavailable: {0}")]
    Unavailable(String),
    /// The store is up but the call gave up waiting (a row lock held too long, a statement
    /// cut off by its timeout). Retrying later may work. For logs only.
    #[error("store timed out: {0}")]
    Timeout(String),
    /// Anything else unexpected. For logs only.
    #[error("store failure: {0}")]
    Internal(String),
}

impl StoreError {
    /// A short name of the kind (`unavailable`, `timeout`, `internal`), for metrics labels.
    #[must_use]
    pub fn kind(&self) -> &'static str {
        self.into()
    }

    /// Whether a client should retry later (503) rather than report a bug (500).
    #[must_use]
    pub const fn is_transient(&self) -> bool {
        matches!(self, Self::Unavailable(_) | Self::Timeout(_))
    }
}

/// Why a request with an `Idempotency-Key` does not run (charges and payments alike).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Error)]
pub enum KeyConflict {
    /// `IDEMPOTENCY_KEY_REUSED`: the key was used for a different request.
    #[error("the Idempotency-Key was used for a different request")]
    Reused,
    /// `IDEMPOTENCY_KEY_IN_FLIGHT`: a request with the same key is still running.
    #[error("a request with this Idempotency-Key is still running")]
    InFlight,
}

/// Issuing a queue token.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum IssueTokenError {
    /// No room has this id.
    #[error("room not found")]
    RoomNotFound,
    /// The room does not take joiners yet.
    #[error("the room does not take joiners yet")]
    RoomNotOpen {
        /// When it opens.
        opens_at: Option<OffsetDateTime>,
        /// When its pre-queue opens.
        prequeue_opens_at: Option<OffsetDateTime>,
    },
    /// The room is closed.
    #[error("the room is closed")]
    RoomClosed,
    /// The store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// Reading a queue token (`GET /queue/token`).
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum ReadTokenError {
    /// `TOKEN_INVALID`: malformed or unknown token.
    #[error("unknown or malformed token")]
    Invalid,
    /// The store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// Authorising a protected call with a token.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum AuthorizeError {
    /// `TOKEN_INVALID`: malformed or unknown token.
    #[error("unknown or malformed token")]
    Invalid,
    /// `TOKEN_EXPIRED`: TTL reached, or used up by a payment.
    #[error("token expired")]
    Expired,
    /// `TOKEN_NOT_ACTIVE`: valid, but still waiting in line.
    #[error("token still waiting")]
    NotActive,
    /// The store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// Listing concerts.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum ListConcertsError {
    /// The store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// Listing a concert's bookable schedules.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum ListSchedulesError {
    /// The concert is gated by another room: join `room` for it.
    #[error("this concert is sold in the room {room}")]
    RoomMismatch {
        /// The room to join.
        room: RoomId,
    },
    /// `NOT_FOUND`: unknown concert.
    #[error("concert not found")]
    NotFound,
    /// The store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// Listing a schedule's seats.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum ListSeatsError {
    /// The concert is gated by another room: join `room` for it.
    #[error("this concert is sold in the room {room}")]
    RoomMismatch {
        /// The room to join.
        room: RoomId,
    },
    /// `NOT_FOUND`: unknown schedule.
    #[error("schedule not found")]
    NotFound,
    /// The store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// Reserving a seat.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum ReserveError {
    /// The concert is gated by another room: join `room` for it.
    #[error("this concert is sold in the room {room}")]
    RoomMismatch {
        /// The room to join.
        room: RoomId,
    },
    /// `NOT_FOUND`: no such seat in that schedule, or the schedule has started.
    #[error("seat not found in a bookable schedule")]
    NotFound,
    /// `SEAT_UNAVAILABLE`: held (unexpired) or sold.
    #[error("seat is held or sold")]
    SeatUnavailable,
    /// `HOLD_LIMIT`: the user already has `MAX_HOLDS_PER_USER` live holds.
    #[error("the user already holds {max} seats")]
    HoldLimit {
        /// The limit in force.
        max: u32,
    },
    /// The store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// Reading a reservation.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum GetReservationError {
    /// `NOT_FOUND`: unknown, or another user's.
    #[error("reservation not found")]
    NotFound,
    /// The store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// Paying a reservation. On every variant nothing changed.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum PayError {
    /// The concert is gated by another room: join `room` for it.
    #[error("this concert is sold in the room {room}")]
    RoomMismatch {
        /// The room to join.
        room: RoomId,
    },
    /// `TOKEN_INVALID`: malformed or unknown token.
    #[error("unknown or malformed token")]
    TokenInvalid,
    /// `TOKEN_EXPIRED`: TTL reached, or the token already paid (a token pays once).
    #[error("token expired or already used by a payment")]
    TokenExpired,
    /// `TOKEN_NOT_ACTIVE`: still waiting in line.
    #[error("token still waiting")]
    TokenNotActive,
    /// `NOT_FOUND`: unknown reservation, or another user's.
    #[error("reservation not found")]
    NotFound,
    /// `HOLD_EXPIRED`: the hold ran out before payment.
    #[error("the hold on this seat has expired")]
    HoldExpired,
    /// `ALREADY_PAID`.
    #[error("reservation already paid")]
    AlreadyPaid,
    /// `INSUFFICIENT_BALANCE`.
    #[error("balance {balance} is below the price {price}")]
    InsufficientBalance {
        /// The balance, unchanged.
        balance: Won,
        /// The price to pay.
        price: Won,
    },
    /// The `Idempotency-Key` stops this request (reused, or in flight).
    #[error(transparent)]
    Key(#[from] KeyConflict),
    /// The store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
}

impl From<AuthorizeError> for PayError {
    fn from(e: AuthorizeError) -> Self {
        match e {
            AuthorizeError::Invalid => Self::TokenInvalid,
            AuthorizeError::Expired => Self::TokenExpired,
            AuthorizeError::NotActive => Self::TokenNotActive,
            AuthorizeError::Store(s) => Self::Store(s),
        }
    }
}

/// Reading a balance.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum BalanceError {
    /// The store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// Reading a page of the balance history.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum HistoryError {
    /// `INVALID_REQUEST`: `limit` outside 1..=100.
    #[error("limit must be between 1 and 100")]
    InvalidLimit,
    /// `INVALID_REQUEST`: `before` is not an entry of this user.
    #[error("before is not an entry of this user's history")]
    UnknownBefore,
    /// The store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// Reading a page of the operator log.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum AuditLogError {
    /// `INVALID_REQUEST`: `limit` outside 1..=100.
    #[error("limit must be between 1 and 100")]
    InvalidLimit,
    /// The store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// Charging a balance. On every variant nothing changed.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum ChargeError {
    /// `INVALID_AMOUNT`: not in `1..=1_000_000_000`.
    #[error("amount must be an integer between 1 and 1000000000")]
    InvalidAmount,
    /// `BALANCE_LIMIT`: the balance would exceed 10,000,000,000.
    #[error("balance {balance} plus {amount} would exceed the limit")]
    BalanceLimit {
        /// The balance, unchanged.
        balance: Won,
        /// The amount asked for.
        amount: Won,
    },
    /// The `Idempotency-Key` stops this request (reused, or in flight).
    #[error(transparent)]
    Key(#[from] KeyConflict),
    /// The store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// Changing the waiting room's settings.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum UpdateQueueError {
    /// `INVALID_REQUEST`: a value out of bounds.
    #[error(transparent)]
    Invalid(#[from] InvalidSetting),
    /// The store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// Creating a concert.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum CreateConcertError {
    /// `INVALID_REQUEST`: a catalogue rule is broken; nothing stored.
    #[error(transparent)]
    Invalid(#[from] InvalidCatalogue),
    /// The store failed; nothing stored.
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// Adding a schedule to a concert.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum AddScheduleError {
    /// `NOT_FOUND`: unknown concert.
    #[error("concert not found")]
    NotFound,
    /// `INVALID_REQUEST`: a catalogue rule is broken; nothing stored.
    #[error(transparent)]
    Invalid(#[from] InvalidCatalogue),
    /// The store failed; nothing stored.
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// Reading a concert's sales.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum SalesError {
    /// `NOT_FOUND`: unknown concert.
    #[error("concert not found")]
    NotFound,
    /// The store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// Why a room cannot be created.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum CreateRoomError {
    /// A field is out of bounds or inconsistent.
    #[error(transparent)]
    Invalid(#[from] InvalidRoom),
    /// A room with this id exists.
    #[error("a room with this id exists")]
    Exists,
    /// A concert named is in another room.
    #[error("concert {0} is in another room")]
    ConcertInRoom(crate::ids::ConcertId),
    /// A concert named does not exist.
    #[error("concert {0} not found")]
    UnknownConcert(crate::ids::ConcertId),
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// Why a room cannot be changed.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum UpdateRoomError {
    /// No room has this id.
    #[error("room not found")]
    NotFound,
    /// A field is out of bounds or inconsistent.
    #[error(transparent)]
    Invalid(#[from] InvalidRoom),
    /// The opening, pre-queue or draw changes after the opening.
    #[error("the room has opened: its opening, pre-queue and draw can no longer change")]
    AlreadyOpen,
    /// A concert added is in another room.
    #[error("concert {0} is in another room")]
    ConcertInRoom(crate::ids::ConcertId),
    /// A concert added does not exist.
    #[error("concert {0} not found")]
    UnknownConcert(crate::ids::ConcertId),
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// Why a room cannot be read.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum GetRoomError {
    /// No room has this id.
    #[error("room not found")]
    NotFound,
    #[error(transparent)]
    Store(#[from] StoreError),
}
