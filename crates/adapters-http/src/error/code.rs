//! The table of every `code` an error body can carry: status, title and description, and
//! their spelling (`strum`), declared once by the `codes!` macro.

use std::fmt;

use actix_web::http::StatusCode;
use serde::{Deserialize, Serialize};
use utoipa::openapi::RefOr;
use utoipa::ToSchema;

use super::*;

macro_rules! codes {
    ($( $(#[$doc:meta])* $variant:ident = $status:literal, $title:literal, $description:literal; )*) => {
        /// Every `code` an error body can carry: the contract's table, plus the rows it leaves
        /// to the HTTP layer (`METHOD_NOT_ALLOWED`, `REQUEST_TIMEOUT`, `INTERNAL`).
        #[derive(
            Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord,
            strum::IntoStaticStr, strum::EnumString, strum::VariantArray, strum::VariantNames,
        )]
        #[strum(serialize_all = "SCREAMING_SNAKE_CASE")]
        pub enum ErrorCode {
            $( $(#[$doc])* $variant, )*
        }

        impl ErrorCode {
            /// The HTTP status this code is answered with.
            #[must_use]
            pub fn status(self) -> StatusCode {
                match self {
                    $( Self::$variant => match StatusCode::from_u16($status) {
                        Ok(s) => s,
                        Err(_) => StatusCode::INTERNAL_SERVER_ERROR,
                    }, )*
                }
            }

            /// A short, fixed, human-readable summary (the problem's `title`).
            #[must_use]
            pub const fn title(self) -> &'static str {
                match self {
                    $( Self::$variant => $title, )*
                }
            }

            /// What the problem means and what a client can do about it (the problem type's
            /// documentation).
            #[must_use]
            pub const fn description(self) -> &'static str {
                match self {
                    $( Self::$variant => $description, )*
                }
            }
        }
    };
}

codes! {
    /// 400: malformed JSON, wrong types, missing or unknown fields, malformed ids or query.
    InvalidRequest = 400, "Invalid request",
        "The request is malformed: JSON that does not parse, a field of the wrong type, a missing or unknown field, an id that is not a lower-case hyphenated UUID, a bad query parameter or Idempotency-Key. Fix the request; retrying it unchanged gets the same answer.";
    /// 400: a charge amount that is not an integer in `1..=1_000_000_000`.
    InvalidAmount = 400, "Invalid amount",
        "A charge must be an integer number of won between 1 and 1,000,000,000.";
    /// 401: no `Authorization: Bearer <token>` header.
    TokenMissing = 401, "Token missing",
        "This call needs `Authorization: Bearer <token>`: a queue token for the public API, the operator token for /admin and /metrics.";
    /// 401: a bearer token that is unknown, malformed or forged.
    TokenInvalid = 401, "Token invalid",
        "The bearer token is not one this service issued (or not the operator token). Take a place in line with POST /queue/tokens.";
    /// 401: the token's TTL ran out, or a payment used it up.
    TokenExpired = 401, "Token expired",
        "The queue token's active time ran out, or a payment used it up. Take a new place in line.";
    /// 401: identity is on and the request carries no `Authorization: Bearer <JWT>`.
    IdentityMissing = 401, "Identity missing",
        "This service trusts only signed identities: send `Authorization: Bearer <JWT>`, an ID or access token of the site's identity provider (sign in first).";
    /// 401: the bearer is not a JWT this service trusts (signature, key, algorithm, issuer,
    /// audience, time, or a user claim that is not a UUID).
    IdentityInvalid = 401, "Identity invalid",
        "The signed identity does not verify: a bad or unknown signature or algorithm, another issuer or audience, expired or not yet valid, or no user UUID in it. Sign in again.";
    /// 402: the balance does not cover the price.
    InsufficientBalance = 402, "Insufficient balance",
        "The balance is below the price; nothing changed. Charge the balance and pay again (with the same Idempotency-Key if you sent one).";
    /// 403: the token is still WAITING.
    TokenNotActive = 403, "Token not active",
        "The queue token is still waiting in line. Poll GET /queue/token until it is ACTIVE.";
    /// 403: the signed identity is of another user than the one the request names.
    Forbidden = 403, "Forbidden",
        "The request names a user (a body `userId` or a path `{userId}`) other than the signed-in one. Nothing was done.";
    /// 403: the token's room does not sell this concert; the body's `roomId` names the room
    /// that does.
    RoomMismatch = 403, "Room mismatch",
        "This concert is sold in another room than the one the queue token was issued in. Join the room named by `roomId` (POST /queue/tokens with that roomId) and use its token.";
    /// 404: unknown resource, another user's reservation, an unknown route, or `/admin` while
    /// the operator API is off.
    NotFound = 404, "Not found",
        "No such concert, schedule, seat, reservation or route (another user's reservation reads as unknown).";
    /// 405: the route exists but not with this method; `Allow` lists the methods it serves.
    MethodNotAllowed = 405, "Method not allowed",
        "The path exists but does not serve this method; the Allow header lists those it does.";
    /// 408: the request body did not arrive in time.
    RequestTimeout = 408, "Request timeout",
        "The request body did not arrive in time (a body shorter than its Content-Length, or a stalled client). Nothing was done; send the request again.";
    /// 409: the seat is held or sold.
    SeatUnavailable = 409, "Seat unavailable",
        "The seat is held by someone else or sold. Pick another seat.";
    /// 409: the hold ran out before payment.
    HoldExpired = 409, "Hold expired",
        "The hold on this seat ran out before the payment. Reserve the seat again if it is still available.";
    /// 409: the reservation is already paid.
    AlreadyPaid = 409, "Already paid",
        "This reservation is already paid.";
    /// 409: the charge would take the balance above 10,000,000,000.
    BalanceLimit = 409, "Balance limit",
        "The charge would take the balance above 10,000,000,000 won; nothing changed.";
    /// 409: the user already has `MAX_HOLDS_PER_USER` live holds.
    HoldLimit = 409, "Hold limit",
        "The user already holds as many unpaid seats as allowed. Pay for or let go of a hold first.";
    /// 409: the room does not take joiners yet; the body carries `opensAt` and
    /// `prequeueOpensAt`.
    RoomNotOpen = 409, "Room not open",
        "The room does not take joiners yet. Come back at `prequeueOpensAt` (or `opensAt` when there is no pre-queue): joining early in the pre-queue gives no advantage, its order is drawn at the opening.";
    /// 409: the room is closed.
    RoomClosed = 409, "Room closed",
        "The room is closed: it takes no new joiners. Tokens issued before live on as usual.";
    /// 409: a room with this id exists.
    RoomExists = 409, "Room exists",
        "A room with this id exists already. Choose another id, or change the room with PATCH /admin/rooms/{roomId}.";
    /// 409: a concert named is in another room than `main`.
    ConcertInRoom = 409, "Concert in a room",
        "A concert named is already gated by another room. Remove it from that room first (it goes back to main), then add it here.";
    /// 409: the opening, pre-queue or draw of a room that has opened.
    RoomAlreadyOpen = 409, "Room already open",
        "The room has opened: its opensAt, prequeueOpensAt and drawAtOpen can no longer change.";
    /// 409: a request with the same `Idempotency-Key` is still running.
    IdempotencyKeyInFlight = 409, "Idempotency key in flight",
        "A request with the same Idempotency-Key is still running. Retry after Retry-After seconds to get its answer.";
    /// 413: the body is over the limit (16 KiB; 4 MiB under /admin).
    PayloadTooLarge = 413, "Payload too large",
        "The request body is over the limit: 16 KiB for the public API, 4 MiB under /admin.";
    /// 422: the `Idempotency-Key` was used for a different request.
    IdempotencyKeyReused = 422, "Idempotency key reused",
        "This Idempotency-Key was already used for a different request (another endpoint or other body fields). Use a new key for a new request.";
    /// 429: over `ISSUE_RATE_PER_MIN` from one client address.
    RateLimited = 429, "Rate limited",
        "Too many requests from this address. Wait Retry-After seconds.";
    /// 500: the server is broken; the cause is in the logs only.
    Internal = 500, "Internal server error",
        "The server failed to handle the request. The cause is logged; nothing in this answer describes it.";
    /// 503: the store is unreachable or busy; retry after `Retry-After` seconds. Nothing was
    /// done.
    Unavailable = 503, "Service unavailable",
        "The service cannot reach its store, or had no capacity free in time. Nothing was done; retry after Retry-After seconds (with the same Idempotency-Key if you sent one).";
}

impl ErrorCode {
    /// The contract's spelling of the code (`SEAT_UNAVAILABLE`).
    #[must_use]
    pub fn as_str(self) -> &'static str {
        self.into()
    }

    /// The slug of its problem type (`seat-unavailable`).
    #[must_use]
    pub fn slug(self) -> String {
        self.as_str().to_ascii_lowercase().replace('_', "-")
    }

    /// The code a slug names.
    #[must_use]
    pub fn from_slug(slug: &str) -> Option<Self> {
        if slug.bytes().any(|b| !(b.is_ascii_lowercase() || b == b'-')) {
            return None;
        }
        slug.to_ascii_uppercase().replace('-', "_").parse().ok()
    }

    /// The problem `type`: a relative URI served by `GET /problems/{slug}`.
    #[must_use]
    pub fn type_uri(self) -> String {
        format!("{PROBLEM_BASE}{}", self.slug())
    }

    /// Whether answers with this code carry `Retry-After`.
    #[must_use]
    pub const fn has_retry_after(self) -> bool {
        matches!(self, Self::Unavailable | Self::RateLimited | Self::IdempotencyKeyInFlight)
    }

    /// Whether answers with this code carry `WWW-Authenticate`.
    #[must_use]
    pub const fn has_www_authenticate(self) -> bool {
        matches!(
            self,
            Self::TokenMissing
                | Self::TokenInvalid
                | Self::TokenExpired
                | Self::IdentityMissing
                | Self::IdentityInvalid
        )
    }
}

impl fmt::Display for ErrorCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl Serialize for ErrorCode {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.as_str())
    }
}

impl<'de> Deserialize<'de> for ErrorCode {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        s.parse().map_err(|_| serde::de::Error::custom(format!("unknown error code {s}")))
    }
}

impl utoipa::PartialSchema for ErrorCode {
    fn schema() -> RefOr<utoipa::openapi::schema::Schema> {
        crate::wire::enum_schema::<Self>().into()
    }
}

impl ToSchema for ErrorCode {}
