//! Every domain error enum mapped, exhaustively, to a code and a detail (the `From`
//! conversions), with the codes each can be answered with ([`ErrorRows`]) from the same arms.

use actix_web::error::BlockingError;
use domain::error::{
    AddScheduleError, AuditLogError, AuthorizeError, BalanceError, ChargeError, CreateConcertError, CreateRoomError,
    GetReservationError, GetRoomError, HistoryError, IssueTokenError, KeyConflict, ListConcertsError,
    ListSchedulesError, ListSeatsError, PayError, ReadTokenError, ReserveError, SalesError, StoreError,
    UpdateQueueError, UpdateRoomError,
};

use super::*;

/// The codes an error type can be answered with, for the OpenAPI response rows (`crate::responses::Fails`).
/// Implemented by the `errors!` mapping below for every domain error enum (from the same arms
/// as the `From` conversion, so the two cannot disagree), for tuples (their union), and for
/// the HTTP-level markers of this module.
pub trait ErrorRows {
    /// Every code, in any order, possibly repeated.
    fn codes() -> Vec<ErrorCode>;
}

/// Every store failure: 503 when transient, 500 otherwise.
const STORE_CODES: [ErrorCode; 2] = [ErrorCode::Unavailable, ErrorCode::Internal];

impl From<StoreError> for ApiError {
    fn from(e: StoreError) -> Self {
        metrics::counter!(crate::metrics::STORE_ERRORS_TOTAL, "kind" => e.kind()).increment(1);
        match e {
            StoreError::Unavailable(cause) | StoreError::Timeout(cause) => Self::unavailable(&cause),
            StoreError::Internal(cause) => Self::internal(&cause),
        }
    }
}

impl ErrorRows for StoreError {
    fn codes() -> Vec<ErrorCode> {
        STORE_CODES.to_vec()
    }
}

/// Declares, once per domain error enum, the code and detail of each variant: the `From`
/// conversion (an exhaustive match, so a new variant fails to compile here until it is given a
/// code) and the [`ErrorRows`] of the same arms.
macro_rules! errors {
    ($( $ty:ident [$spat:pat => store($s:ident)] { $( $pat:pat => $code:ident : $detail:expr, )* } )*) => {
        $(
            impl From<$ty> for ApiError {
                fn from(e: $ty) -> Self {
                    #[allow(clippy::useless_format, reason = "a detail is a `format!` with or without arguments")]
                    match e {
                        $( $pat => error(ErrorCode::$code, $detail), )*
                        $spat => $s.into(),
                    }
                }
            }

            impl ErrorRows for $ty {
                fn codes() -> Vec<ErrorCode> {
                    let mut codes = vec![$( ErrorCode::$code, )*];
                    codes.extend(STORE_CODES);
                    codes
                }
            }
        )*
    };
}

/// A detail, with members for the problem body.
pub(crate) struct Detail {
    text: String,
    members: Vec<(&'static str, serde_json::Value)>,
}

impl Detail {
    fn with<const N: usize>(text: &str, members: [(&'static str, serde_json::Value); N]) -> Self {
        Self { text: text.to_owned(), members: members.into() }
    }
}

impl From<&str> for Detail {
    fn from(text: &str) -> Self {
        Self { text: text.to_owned(), members: Vec::new() }
    }
}

impl From<String> for Detail {
    fn from(text: String) -> Self {
        Self { text, members: Vec::new() }
    }
}

fn error(code: ErrorCode, detail: impl Into<Detail>) -> ApiError {
    let detail = detail.into();
    detail.members.into_iter().fold(ApiError::new(code, detail.text), |e, (k, v)| e.with(k, v))
}

fn time_value(t: Option<time::OffsetDateTime>) -> serde_json::Value {
    t.map_or(serde_json::Value::Null, |t| serde_json::Value::String(crate::wire::rfc3339(t)))
}

fn room_mismatch(room: &domain::room::RoomId) -> Detail {
    Detail::with(
        &format!("this concert is sold in the room {room}: join it for a token there"),
        [("roomId", serde_json::Value::String(room.to_string()))],
    )
}

const TOKEN_INVALID: &str = "the queue token is unknown or malformed";
const TOKEN_EXPIRED: &str = "the queue token has expired or was used up by a payment; take a new place in line";
const TOKEN_NOT_ACTIVE: &str = "the queue token is still waiting to be admitted";
const KEY_REUSED: &str = "this Idempotency-Key was used for a different request";
const KEY_IN_FLIGHT: &str = "a request with this Idempotency-Key is still running; retry shortly";

errors! {
    IssueTokenError [IssueTokenError::Store(s) => store(s)] {
        IssueTokenError::RoomNotFound => NotFound: "no such room",
        IssueTokenError::RoomNotOpen { opens_at, prequeue_opens_at } => RoomNotOpen:
            Detail::with("the room does not take joiners yet", [("opensAt", time_value(opens_at)), ("prequeueOpensAt", time_value(prequeue_opens_at))]),
        IssueTokenError::RoomClosed => RoomClosed: "the room is closed to new joiners",
    }
    ReadTokenError [ReadTokenError::Store(s) => store(s)] {
        ReadTokenError::Invalid => TokenInvalid: TOKEN_INVALID,
    }
    AuthorizeError [AuthorizeError::Store(s) => store(s)] {
        AuthorizeError::Invalid => TokenInvalid: TOKEN_INVALID,
        AuthorizeError::Expired => TokenExpired: TOKEN_EXPIRED,
        AuthorizeError::NotActive => TokenNotActive: TOKEN_NOT_ACTIVE,
    }
    ListConcertsError [ListConcertsError::Store(s) => store(s)] {
    }
    ListSchedulesError [ListSchedulesError::Store(s) => store(s)] {
        ListSchedulesError::NotFound => NotFound: "no such concert",
        ListSchedulesError::RoomMismatch { room } => RoomMismatch: room_mismatch(&room),
    }
    ListSeatsError [ListSeatsError::Store(s) => store(s)] {
        ListSeatsError::NotFound => NotFound: "no such schedule",
        ListSeatsError::RoomMismatch { room } => RoomMismatch: room_mismatch(&room),
    }
    ReserveError [ReserveError::Store(s) => store(s)] {
        ReserveError::NotFound => NotFound: "no such seat in a schedule open for booking",
        ReserveError::RoomMismatch { room } => RoomMismatch: room_mismatch(&room),
        ReserveError::SeatUnavailable => SeatUnavailable: "the seat is held or sold",
        ReserveError::HoldLimit { max } => HoldLimit: format!("you already hold {max} unpaid seats, the most allowed"),
    }
    GetReservationError [GetReservationError::Store(s) => store(s)] {
        GetReservationError::NotFound => NotFound: "no such reservation",
    }
    PayError [PayError::Store(s) => store(s)] {
        PayError::TokenInvalid => TokenInvalid: TOKEN_INVALID,
        PayError::TokenExpired => TokenExpired: TOKEN_EXPIRED,
        PayError::TokenNotActive => TokenNotActive: TOKEN_NOT_ACTIVE,
        PayError::NotFound => NotFound: "no such reservation",
        PayError::RoomMismatch { room } => RoomMismatch: room_mismatch(&room),
        PayError::HoldExpired => HoldExpired: "the hold on this seat has expired",
        PayError::AlreadyPaid => AlreadyPaid: "the reservation is already paid",
        PayError::InsufficientBalance { balance, price } => InsufficientBalance:
            format!("the balance of {} won is below the price of {} won", balance.get(), price.get()),
        PayError::Key(KeyConflict::Reused) => IdempotencyKeyReused: KEY_REUSED,
        PayError::Key(KeyConflict::InFlight) => IdempotencyKeyInFlight: KEY_IN_FLIGHT,
    }
    BalanceError [BalanceError::Store(s) => store(s)] {
    }
    AuditLogError [AuditLogError::Store(s) => store(s)] {
        AuditLogError::InvalidLimit => InvalidRequest: "limit must be an integer between 1 and 100",
    }
    HistoryError [HistoryError::Store(s) => store(s)] {
        HistoryError::InvalidLimit => InvalidRequest: "limit must be an integer between 1 and 100",
        HistoryError::UnknownBefore => InvalidRequest: "before is not an entry of this user's history",
    }
    ChargeError [ChargeError::Store(s) => store(s)] {
        ChargeError::InvalidAmount => InvalidAmount: "amount must be an integer between 1 and 1000000000",
        ChargeError::BalanceLimit { balance, amount } => BalanceLimit: format!(
            "a balance of {} won plus {} won would exceed the limit of {} won",
            balance.get(),
            amount.get(),
            domain::money::BALANCE_LIMIT.get()
        ),
        ChargeError::Key(KeyConflict::Reused) => IdempotencyKeyReused: KEY_REUSED,
        ChargeError::Key(KeyConflict::InFlight) => IdempotencyKeyInFlight: KEY_IN_FLIGHT,
    }
    UpdateQueueError [UpdateQueueError::Store(s) => store(s)] {
        UpdateQueueError::Invalid(e) => InvalidRequest: e.to_string(),
    }
    CreateConcertError [CreateConcertError::Store(s) => store(s)] {
        CreateConcertError::Invalid(e) => InvalidRequest: e.to_string(),
    }
    AddScheduleError [AddScheduleError::Store(s) => store(s)] {
        AddScheduleError::NotFound => NotFound: "no such concert",
        AddScheduleError::Invalid(e) => InvalidRequest: e.to_string(),
    }
    SalesError [SalesError::Store(s) => store(s)] {
        SalesError::NotFound => NotFound: "no such concert",
    }
}

impl From<crate::identity::IdentityError> for ApiError {
    fn from(e: crate::identity::IdentityError) -> Self {
        use crate::identity::IdentityError;
        match e {
            IdentityError::Missing => Self::token_missing(Realm::Identity),
            IdentityError::Invalid(why) => {
                Self { realm: Realm::Identity, ..Self::new(ErrorCode::IdentityInvalid, why) }
            }
            IdentityError::Unavailable { retry_after } => Self {
                retry_after: retry_after.max(1),
                ..Self::unavailable(&"the identity provider's signing keys cannot be fetched and none is cached")
            },
        }
    }
}

impl From<BlockingError> for ApiError {
    fn from(e: BlockingError) -> Self {
        // The blocking pool is gone or the task panicked: the server is broken, not the request.
        Self::internal(&e)
    }
}

errors! {
    CreateRoomError [CreateRoomError::Store(s) => store(s)] {
        CreateRoomError::Invalid(e) => InvalidRequest: e.to_string(),
        CreateRoomError::Exists => RoomExists: "a room with this id exists",
        CreateRoomError::ConcertInRoom(c) => ConcertInRoom: format!("concert {c} is in another room"),
        CreateRoomError::UnknownConcert(c) => NotFound: format!("no such concert: {c}"),
    }
    UpdateRoomError [UpdateRoomError::Store(s) => store(s)] {
        UpdateRoomError::NotFound => NotFound: "no such room",
        UpdateRoomError::Invalid(e) => InvalidRequest: e.to_string(),
        UpdateRoomError::AlreadyOpen => RoomAlreadyOpen: "the room has opened: its opening, pre-queue and draw can no longer change",
        UpdateRoomError::ConcertInRoom(c) => ConcertInRoom: format!("concert {c} is in another room"),
        UpdateRoomError::UnknownConcert(c) => NotFound: format!("no such concert: {c}"),
    }
    GetRoomError [GetRoomError::Store(s) => store(s)] {
        GetRoomError::NotFound => NotFound: "no such room",
    }
}
