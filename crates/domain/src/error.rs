//! One error enum per use case. Each variant is one `code` of the public contract
//! (`../shared/api.md`); `Store` carries a failure of the store itself (503 when unreachable,
//! 500 otherwise). The HTTP adapter maps them in exactly one place.

use thiserror::Error;

use crate::money::Won;
use crate::ports::StoreError;

/// Issuing a queue token.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum IssueTokenError {
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
    /// `NOT_FOUND`: no such seat in that schedule, or the schedule has started.
    #[error("seat not found in a bookable schedule")]
    NotFound,
    /// `SEAT_UNAVAILABLE`: held (unexpired) or sold.
    #[error("seat is held or sold")]
    SeatUnavailable,
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

/// Paying a reservation.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum PayError {
    /// `NOT_FOUND`: unknown reservation, or another user's.
    #[error("reservation not found")]
    NotFound,
    /// `HOLD_EXPIRED`: the hold ran out before payment.
    #[error("the hold on this seat has expired")]
    HoldExpired,
    /// `ALREADY_PAID`.
    #[error("reservation already paid")]
    AlreadyPaid,
    /// `INSUFFICIENT_BALANCE`: nothing changed.
    #[error("balance {balance} is below the price {price}")]
    InsufficientBalance {
        /// The balance, unchanged.
        balance: Won,
        /// The price to pay.
        price: Won,
    },
    /// The store failed; nothing changed.
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// Reading a balance.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum BalanceError {
    /// The store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// Charging a balance.
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
    /// The store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
}
