//! The one place where failures become HTTP: every domain error enum and every rejection of the
//! HTTP layer (extractors, body reading, routing, rate limit, store slots) is mapped here,
//! exhaustively, to a status and a contract `code`, and answered as RFC 9457 problem details
//! (`application/problem+json`).
//!
//! The codes, their statuses, titles and descriptions are one table ([`ErrorCode`], declared
//! by the `codes!` macro below); the spelling comes from `strum` once. The same table answers
//! `GET /problems/{slug}`, the documentation page each problem's `type` URI points to, and the
//! OpenAPI response rows ([`Fails`]).
//!
//! Store failures are logged here, once, with their cause, and counted in
//! `store_errors_total{kind}`; clients get a fixed text that never names SQL, types or
//! internals.

use std::collections::BTreeMap;
use std::fmt;
use std::marker::PhantomData;

use actix_web::error::{BlockingError, JsonPayloadError, PathError, PayloadError, QueryPayloadError};
use actix_web::http::header::{self, HeaderValue};
use actix_web::http::StatusCode;
use actix_web::{HttpRequest, HttpResponse, ResponseError};
use domain::error::{
    AddScheduleError, AuthorizeError, BalanceError, ChargeError, CreateConcertError, GetReservationError, HistoryError,
    IssueTokenError, KeyConflict, ListConcertsError, ListSchedulesError, ListSeatsError, PayError, ReadTokenError,
    ReserveError, SalesError, StoreError, UpdateQueueError,
};
use serde::{Deserialize, Serialize};
use utoipa::openapi::{ContentBuilder, HeaderBuilder, RefOr, Response, ResponseBuilder};
use utoipa::ToSchema;

/// Seconds a client is told to wait (`Retry-After`) when the store is unavailable, when no
/// store slot came free in time, or when a request with the same `Idempotency-Key` is running.
pub const RETRY_AFTER_SECS: u64 = 1;

/// The media type of every error body.
pub const PROBLEM_JSON: &str = "application/problem+json";

/// Where the problem type documents live: `type` is `/problems/<slug>`.
pub const PROBLEM_BASE: &str = "/problems/";

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

/// An RFC 9457 problem details body, as every error response carries it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[schema(example = json!({
    "type": "/problems/seat-unavailable",
    "title": "Seat unavailable",
    "status": 409,
    "detail": "the seat is held or sold",
    "code": "SEAT_UNAVAILABLE"
}))]
pub struct Problem {
    /// A URI reference naming the kind of problem; `GET` it for its documentation.
    #[serde(rename = "type")]
    pub type_uri: String,
    /// A short summary of the kind of problem.
    pub title: String,
    /// The HTTP status, repeated.
    pub status: u16,
    /// What went wrong with this request, for humans.
    pub detail: String,
    /// The machine-readable code of the contract.
    pub code: ErrorCode,
}

/// Which authority a 401 challenges for (`WWW-Authenticate`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Realm {
    /// The queue token of the public API.
    Queue,
    /// The operator token of `/admin` and `/metrics`.
    Admin,
    /// A signed identity (a JWT of the identity provider).
    Identity,
}

/// An error answered as problem details. Build it from a domain error (`?` does it), or with
/// the constructors for the HTTP-level cases.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiError {
    code: ErrorCode,
    detail: String,
    retry_after: u64,
    realm: Realm,
    allow: Option<&'static str>,
}

impl ApiError {
    /// An error with a client-safe `detail`.
    #[must_use]
    pub fn new(code: ErrorCode, detail: impl Into<String>) -> Self {
        Self { code, detail: detail.into(), retry_after: RETRY_AFTER_SECS, realm: Realm::Queue, allow: None }
    }

    /// Its code.
    #[must_use]
    pub const fn code(&self) -> ErrorCode {
        self.code
    }

    /// Its detail text.
    #[must_use]
    pub fn detail(&self) -> &str {
        &self.detail
    }

    /// 400 `INVALID_REQUEST`.
    #[must_use]
    pub fn invalid_request(detail: impl Into<String>) -> Self {
        Self::new(ErrorCode::InvalidRequest, detail)
    }

    /// 400 `INVALID_AMOUNT`.
    #[must_use]
    pub fn invalid_amount() -> Self {
        Self::new(ErrorCode::InvalidAmount, "amount must be an integer between 1 and 1000000000")
    }

    /// 401 `TOKEN_MISSING`.
    #[must_use]
    pub fn token_missing(realm: Realm) -> Self {
        let detail = match realm {
            Realm::Queue => "send the queue token as `Authorization: Bearer <token>`",
            Realm::Admin => "send the operator token as `Authorization: Bearer <token>`",
            Realm::Identity => {
                return Self {
                    realm,
                    ..Self::new(ErrorCode::IdentityMissing, "send a signed identity as `Authorization: Bearer <JWT>`")
                }
            }
        };
        Self { realm, ..Self::new(ErrorCode::TokenMissing, detail) }
    }

    /// 401 `TOKEN_INVALID` for the operator API.
    #[must_use]
    pub fn admin_token_invalid() -> Self {
        Self { realm: Realm::Admin, ..Self::new(ErrorCode::TokenInvalid, "this is not the operator token") }
    }

    /// 403 `FORBIDDEN`: the request names another user than the signed-in one.
    #[must_use]
    pub fn forbidden() -> Self {
        Self::new(ErrorCode::Forbidden, "the request names another user than the signed-in one; nothing was done")
    }

    /// 404 `NOT_FOUND`.
    #[must_use]
    pub fn not_found(detail: impl Into<String>) -> Self {
        Self::new(ErrorCode::NotFound, detail)
    }

    /// 405 `METHOD_NOT_ALLOWED`, with the methods the path serves.
    #[must_use]
    pub fn method_not_allowed(allow: &'static str) -> Self {
        Self { allow: Some(allow), ..Self::new(ErrorCode::MethodNotAllowed, format!("this path serves only {allow}")) }
    }

    /// 408 `REQUEST_TIMEOUT`: the body did not arrive in time.
    #[must_use]
    pub fn body_timeout() -> Self {
        Self::new(ErrorCode::RequestTimeout, "the request body did not arrive in time; nothing was done")
    }

    /// 413 `PAYLOAD_TOO_LARGE`.
    #[must_use]
    pub fn payload_too_large(limit: usize) -> Self {
        Self::new(ErrorCode::PayloadTooLarge, format!("request bodies here are limited to {limit} bytes"))
    }

    /// 429 `RATE_LIMITED`, to retry after `secs` seconds.
    #[must_use]
    pub fn rate_limited(secs: u64) -> Self {
        Self {
            retry_after: secs.max(1),
            ..Self::new(ErrorCode::RateLimited, "too many new places in line asked from this address; wait and retry")
        }
    }

    /// 500 `INTERNAL`. The cause is logged here, once, and not answered.
    #[must_use]
    pub fn internal(cause: &dyn fmt::Display) -> Self {
        tracing::error!(cause = %cause, "request failed with an internal error");
        Self::new(ErrorCode::Internal, "the server failed to handle this request")
    }

    /// 503 `UNAVAILABLE`. Logged at warn level: the operator needs it, the client retries.
    #[must_use]
    pub fn unavailable(cause: &dyn fmt::Display) -> Self {
        tracing::warn!(cause = %cause, "answering 503: nothing was done");
        Self::new(ErrorCode::Unavailable, "the service is temporarily unavailable; nothing was done, retry later")
    }

    /// The problem body.
    #[must_use]
    pub fn problem(&self) -> Problem {
        Problem {
            type_uri: self.code.type_uri(),
            title: self.code.title().to_owned(),
            status: self.code.status().as_u16(),
            detail: self.detail.clone(),
            code: self.code,
        }
    }
}

impl fmt::Display for ApiError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.code, self.detail)
    }
}

impl std::error::Error for ApiError {}

impl ResponseError for ApiError {
    fn status_code(&self) -> StatusCode {
        self.code.status()
    }

    fn error_response(&self) -> HttpResponse {
        let mut res = HttpResponse::build(self.status_code());
        res.insert_header((header::CONTENT_TYPE, HeaderValue::from_static(PROBLEM_JSON)));
        if self.code.has_retry_after() {
            res.insert_header((header::RETRY_AFTER, self.retry_after));
        }
        if self.code.has_www_authenticate() {
            let challenge = match (self.realm, self.code) {
                (Realm::Admin, ErrorCode::TokenMissing) => r#"Bearer realm="admin""#,
                (Realm::Admin, _) => r#"Bearer realm="admin", error="invalid_token""#,
                (Realm::Queue, ErrorCode::TokenMissing) => r#"Bearer realm="queue""#,
                (Realm::Queue, _) => r#"Bearer realm="queue", error="invalid_token""#,
                (Realm::Identity, ErrorCode::IdentityMissing) => r#"Bearer realm="identity""#,
                (Realm::Identity, _) => r#"Bearer realm="identity", error="invalid_token""#,
            };
            res.insert_header((header::WWW_AUTHENTICATE, HeaderValue::from_static(challenge)));
        }
        if let Some(allow) = self.allow {
            res.insert_header((header::ALLOW, HeaderValue::from_static(allow)));
        }
        // Serialising a struct of strings and integers cannot fail; the fallback keeps even that
        // impossible case a valid problem document.
        let body = serde_json::to_string(&self.problem()).unwrap_or_else(|_| {
            r#"{"type":"/problems/internal","title":"Internal server error","status":500,"detail":"","code":"INTERNAL"}"#.to_owned()
        });
        res.body(body)
    }
}

// ---- domain errors --------------------------------------------------------------------------

/// The codes an error type can be answered with, for the OpenAPI response rows ([`Fails`]).
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
                        $( $pat => ApiError::new(ErrorCode::$code, $detail), )*
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

const TOKEN_INVALID: &str = "the queue token is unknown or malformed";
const TOKEN_EXPIRED: &str = "the queue token has expired or was used up by a payment; take a new place in line";
const TOKEN_NOT_ACTIVE: &str = "the queue token is still waiting to be admitted";
const KEY_REUSED: &str = "this Idempotency-Key was used for a different request";
const KEY_IN_FLIGHT: &str = "a request with this Idempotency-Key is still running; retry shortly";

errors! {
    IssueTokenError [IssueTokenError::Store(s) => store(s)] {
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
    }
    ListSeatsError [ListSeatsError::Store(s) => store(s)] {
        ListSeatsError::NotFound => NotFound: "no such schedule",
    }
    ReserveError [ReserveError::Store(s) => store(s)] {
        ReserveError::NotFound => NotFound: "no such seat in a schedule open for booking",
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
        PayError::HoldExpired => HoldExpired: "the hold on this seat has expired",
        PayError::AlreadyPaid => AlreadyPaid: "the reservation is already paid",
        PayError::InsufficientBalance { balance, price } => InsufficientBalance:
            format!("the balance of {} won is below the price of {} won", balance.get(), price.get()),
        PayError::Key(KeyConflict::Reused) => IdempotencyKeyReused: KEY_REUSED,
        PayError::Key(KeyConflict::InFlight) => IdempotencyKeyInFlight: KEY_IN_FLIGHT,
    }
    BalanceError [BalanceError::Store(s) => store(s)] {
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

// ---- HTTP-level rows ------------------------------------------------------------------------

macro_rules! rows {
    ($( $(#[$doc:meta])* $name:ident => [$($code:ident),*]; )*) => {
        $(
            $(#[$doc])*
            #[derive(Debug, Clone, Copy)]
            pub struct $name;

            impl ErrorRows for $name {
                fn codes() -> Vec<ErrorCode> {
                    vec![$(ErrorCode::$code),*]
                }
            }
        )*
    };
}

rows! {
    /// A malformed id in the path or a malformed query.
    BadInput => [InvalidRequest];
    /// A JSON body: malformed, too large, or too slow to arrive.
    BodyRows => [InvalidRequest, PayloadTooLarge, RequestTimeout];
    /// No free store slot in time (every call that touches the store).
    SlotRows => [Unavailable];
    /// The `Idempotency-Key` header.
    KeyRows => [InvalidRequest];
    /// The per-address rate limit of `POST /queue/tokens`.
    RateRows => [RateLimited];
    /// The operator bearer of `/admin` and `/metrics`.
    AdminRows => [TokenMissing, TokenInvalid];
    /// A missing queue bearer.
    BearerRows => [TokenMissing];
    /// A signed identity (with `AUTH_ISSUER` set): missing, invalid, of another user, or not
    /// verifiable yet (the provider's keys cannot be fetched).
    IdentityRows => [IdentityMissing, IdentityInvalid, Forbidden, Unavailable];
    /// An unknown file or document.
    NotFoundRows => [NotFound];
}

macro_rules! tuple_rows {
    ($($t:ident),*) => {
        impl<$($t: ErrorRows),*> ErrorRows for ($($t,)*) {
            fn codes() -> Vec<ErrorCode> {
                let mut codes = Vec::new();
                $( codes.extend($t::codes()); )*
                codes
            }
        }
    };
}
tuple_rows!(A, B);
tuple_rows!(A, B, C);
tuple_rows!(A, B, C, D);
tuple_rows!(A, B, C, D, E);
tuple_rows!(A, B, C, D, E, F);

/// The error responses of an operation, for `#[utoipa::path(responses(...))]`: one response per
/// status, listing its codes, with an example problem per code and the headers those codes
/// carry. `E` is a domain error enum, an HTTP-level marker, or a tuple of them.
#[derive(Debug)]
pub struct Fails<E>(PhantomData<E>);

impl<E: ErrorRows> utoipa::IntoResponses for Fails<E> {
    fn responses() -> BTreeMap<String, RefOr<Response>> {
        let mut by_status: BTreeMap<u16, Vec<ErrorCode>> = BTreeMap::new();
        for code in E::codes() {
            let codes = by_status.entry(code.status().as_u16()).or_default();
            if !codes.contains(&code) {
                codes.push(code);
            }
        }
        by_status
            .into_iter()
            .map(|(status, mut codes)| {
                codes.sort();
                (status.to_string(), error_response(&codes).into())
            })
            .collect()
    }
}

/// One status's problem response in the OpenAPI document.
fn error_response(codes: &[ErrorCode]) -> Response {
    let names: Vec<&str> = codes.iter().map(|c| c.as_str()).collect();
    let mut content = ContentBuilder::new().schema(Some(utoipa::openapi::Ref::from_schema_name("Problem")));
    for code in codes {
        let example = ApiError::new(*code, code.title().to_lowercase()).problem();
        let value = serde_json::to_value(example).unwrap_or_default();
        content = content.examples_from_iter([(
            code.as_str(),
            utoipa::openapi::example::ExampleBuilder::new().summary(code.title()).value(Some(value)).build(),
        )]);
    }
    let mut response = ResponseBuilder::new().description(names.join(", ")).content(PROBLEM_JSON, content.build());
    if codes.iter().any(|c| c.has_retry_after()) {
        response = response.header(
            "Retry-After",
            HeaderBuilder::new()
                .schema(crate::openapi::integer_schema())
                .description(Some("Seconds to wait before retrying"))
                .build(),
        );
    }
    if codes.iter().any(|c| c.has_www_authenticate()) {
        response = response.header(
            "WWW-Authenticate",
            HeaderBuilder::new()
                .schema(crate::openapi::string_schema())
                .description(Some("The Bearer challenge (RFC 6750)"))
                .build(),
        );
    }
    if codes.contains(&ErrorCode::MethodNotAllowed) {
        response = response.header(
            "Allow",
            HeaderBuilder::new()
                .schema(crate::openapi::string_schema())
                .description(Some("The methods this path serves"))
                .build(),
        );
    }
    response.build()
}

// ---- actix extractor rejections -------------------------------------------------------------
// Installed as the error handlers of `JsonConfig`, `PathConfig`, `QueryConfig`, `FormConfig`
// (see `crate::configure`), so no rejection is answered with actix's plain text. Bodies of the
// API are read by `crate::extract::Body`, which maps its own failures with `payload_error`.

/// `JsonConfig` error handler.
pub fn json_error(err: JsonPayloadError, _req: &HttpRequest) -> actix_web::Error {
    let api = match err {
        JsonPayloadError::OverflowKnownLength { limit, .. } | JsonPayloadError::Overflow { limit } => {
            ApiError::payload_too_large(limit)
        }
        JsonPayloadError::ContentType => {
            ApiError::invalid_request("the body must be JSON (Content-Type: application/json)")
        }
        JsonPayloadError::Deserialize(e) => ApiError::invalid_request(json_detail(&e)),
        JsonPayloadError::Payload(e) => payload_error(e, crate::BODY_LIMIT),
        other => ApiError::invalid_request(format!("unreadable body: {}", short(&other.to_string()))),
    };
    api.into()
}

/// A body that could not be read: too large, cut short, or garbled in transfer.
pub(crate) fn payload_error(err: PayloadError, limit: usize) -> ApiError {
    match err {
        PayloadError::Overflow => ApiError::payload_too_large(limit),
        PayloadError::Incomplete(_) => {
            ApiError::invalid_request("the body ended before its Content-Length; nothing was done")
        }
        _ => ApiError::invalid_request("the request body could not be read"),
    }
}

/// `PathConfig` error handler: a malformed segment in the path.
pub fn path_error(err: PathError, _req: &HttpRequest) -> actix_web::Error {
    let PathError::Deserialize(e) = err else {
        return ApiError::invalid_request("malformed path").into();
    };
    ApiError::invalid_request(format!("malformed path: {}", short(&e.to_string()))).into()
}

/// `QueryConfig` error handler.
pub fn query_error(err: QueryPayloadError, _req: &HttpRequest) -> actix_web::Error {
    let QueryPayloadError::Deserialize(e) = err else {
        return ApiError::invalid_request("malformed query string").into();
    };
    ApiError::invalid_request(format!("malformed query string: {}", short(&e.to_string()))).into()
}

/// The client-facing text of a JSON syntax or shape error. serde's messages name fields and
/// expected shapes (the DTOs set `expecting` so no Rust type name appears), which helps clients
/// fix their request.
pub(crate) fn json_detail(e: &serde_json::Error) -> String {
    use serde_json::error::Category;
    match e.classify() {
        Category::Syntax | Category::Eof => format!("malformed JSON: {}", short(&e.to_string())),
        Category::Data => format!("invalid JSON body: {}", short(&e.to_string())),
        Category::Io => "the request body could not be read".to_owned(),
    }
}

/// Caps client-echoed text so a huge bad value cannot make a huge error body.
pub(crate) fn short(s: &str) -> String {
    const MAX: usize = 200;
    if s.len() <= MAX {
        return s.to_owned();
    }
    let mut end = MAX;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}…", &s[..end])
}

#[cfg(test)]
mod tests {
    use strum::VariantArray as _;

    use super::*;

    #[test]
    fn every_code_has_the_contract_status_and_spelling() {
        let table = [
            (ErrorCode::InvalidRequest, 400, "INVALID_REQUEST"),
            (ErrorCode::InvalidAmount, 400, "INVALID_AMOUNT"),
            (ErrorCode::TokenMissing, 401, "TOKEN_MISSING"),
            (ErrorCode::TokenInvalid, 401, "TOKEN_INVALID"),
            (ErrorCode::TokenExpired, 401, "TOKEN_EXPIRED"),
            (ErrorCode::IdentityMissing, 401, "IDENTITY_MISSING"),
            (ErrorCode::IdentityInvalid, 401, "IDENTITY_INVALID"),
            (ErrorCode::InsufficientBalance, 402, "INSUFFICIENT_BALANCE"),
            (ErrorCode::TokenNotActive, 403, "TOKEN_NOT_ACTIVE"),
            (ErrorCode::Forbidden, 403, "FORBIDDEN"),
            (ErrorCode::NotFound, 404, "NOT_FOUND"),
            (ErrorCode::MethodNotAllowed, 405, "METHOD_NOT_ALLOWED"),
            (ErrorCode::RequestTimeout, 408, "REQUEST_TIMEOUT"),
            (ErrorCode::SeatUnavailable, 409, "SEAT_UNAVAILABLE"),
            (ErrorCode::HoldExpired, 409, "HOLD_EXPIRED"),
            (ErrorCode::AlreadyPaid, 409, "ALREADY_PAID"),
            (ErrorCode::BalanceLimit, 409, "BALANCE_LIMIT"),
            (ErrorCode::HoldLimit, 409, "HOLD_LIMIT"),
            (ErrorCode::IdempotencyKeyInFlight, 409, "IDEMPOTENCY_KEY_IN_FLIGHT"),
            (ErrorCode::PayloadTooLarge, 413, "PAYLOAD_TOO_LARGE"),
            (ErrorCode::IdempotencyKeyReused, 422, "IDEMPOTENCY_KEY_REUSED"),
            (ErrorCode::RateLimited, 429, "RATE_LIMITED"),
            (ErrorCode::Internal, 500, "INTERNAL"),
            (ErrorCode::Unavailable, 503, "UNAVAILABLE"),
        ];
        assert_eq!(table.len(), ErrorCode::VARIANTS.len());
        for (code, status, text) in table {
            assert_eq!(code.status().as_u16(), status, "{text}");
            assert_eq!(code.as_str(), text);
            assert_eq!(serde_json::to_value(code).unwrap(), serde_json::json!(text));
            assert_eq!(ErrorCode::from_slug(&code.slug()), Some(code));
        }
        assert_eq!(ErrorCode::from_slug("SEAT-UNAVAILABLE"), None);
        assert_eq!(ErrorCode::from_slug("seat_unavailable"), None);
    }

    #[test]
    fn store_failures_never_reach_the_body() {
        let e: ApiError = StoreError::Internal("relation \"seats\" does not exist".into()).into();
        assert_eq!(e.code(), ErrorCode::Internal);
        assert!(!e.detail().contains("seats"));
        let e: ApiError = StoreError::Unavailable("connection refused 10.0.0.1".into()).into();
        assert_eq!(e.code(), ErrorCode::Unavailable);
        assert!(!e.detail().contains("refused"));
        let e: ApiError = StoreError::Timeout("canceling statement due to lock timeout".into()).into();
        assert_eq!(e.code(), ErrorCode::Unavailable, "a store that gave up waiting changed nothing: 503");
    }

    #[test]
    fn headers_follow_the_code() {
        let res = ApiError::unavailable(&"down").error_response();
        assert_eq!(res.status(), StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(res.headers().get(header::RETRY_AFTER).unwrap(), "1");
        assert_eq!(res.headers().get(header::CONTENT_TYPE).unwrap(), PROBLEM_JSON);
        let res = ApiError::rate_limited(17).error_response();
        assert_eq!(res.headers().get(header::RETRY_AFTER).unwrap(), "17");
        let res = ApiError::from(PayError::Key(KeyConflict::InFlight)).error_response();
        assert_eq!(res.status(), StatusCode::CONFLICT);
        assert!(res.headers().contains_key(header::RETRY_AFTER));
        let res = ApiError::from(AuthorizeError::Expired).error_response();
        assert!(res.headers().get(header::WWW_AUTHENTICATE).unwrap().to_str().unwrap().starts_with("Bearer"));
        let res = ApiError::method_not_allowed("GET").error_response();
        assert_eq!(res.headers().get(header::ALLOW).unwrap(), "GET");
    }

    #[test]
    fn extractor_rejections_become_contract_problems() {
        let req = actix_web::test::TestRequest::default().to_http_request();
        let code = |e: actix_web::Error| e.as_response_error().status_code().as_u16();
        // A body without Content-Length that outgrows the limit while streaming.
        assert_eq!(code(json_error(JsonPayloadError::Overflow { limit: crate::BODY_LIMIT }, &req)), 413);
        assert_eq!(code(json_error(JsonPayloadError::Payload(PayloadError::Overflow), &req)), 413);
        assert_eq!(code(json_error(JsonPayloadError::Payload(PayloadError::Incomplete(None)), &req)), 400);
        assert_eq!(code(json_error(JsonPayloadError::ContentType, &req)), 400);
        let syntax = serde_json::from_str::<serde_json::Value>("{").unwrap_err();
        let res = json_error(JsonPayloadError::Deserialize(syntax), &req).error_response();
        assert_eq!(res.status(), StatusCode::BAD_REQUEST);
        assert_eq!(res.headers().get(header::CONTENT_TYPE).unwrap(), PROBLEM_JSON);
    }

    #[test]
    fn response_rows_come_from_the_same_arms() {
        let mut codes = <(AuthorizeError, ReserveError)>::codes();
        codes.sort();
        codes.dedup();
        assert!(codes.contains(&ErrorCode::HoldLimit));
        assert!(codes.contains(&ErrorCode::TokenNotActive));
        assert!(codes.contains(&ErrorCode::Unavailable));
        let responses = <Fails<(AuthorizeError, ReserveError)> as utoipa::IntoResponses>::responses();
        assert_eq!(responses.keys().collect::<Vec<_>>(), ["401", "403", "404", "409", "500", "503"]);
    }

    #[test]
    fn long_texts_are_cut_on_a_char_boundary() {
        let s = "é".repeat(300);
        assert!(short(&s).len() <= 200 + '…'.len_utf8());
    }
}
