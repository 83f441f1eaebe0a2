//! The one place where failures become HTTP: every domain error enum and every actix extractor
//! rejection is mapped here, exhaustively, to a status and a contract `code`, and answered as
//! RFC 9457 problem details (`application/problem+json`).
//!
//! Store failures are logged here, once, with their cause; clients get a fixed text that never
//! names SQL, types or internals.

use std::fmt;

use actix_web::error::{BlockingError, JsonPayloadError, PathError, PayloadError, QueryPayloadError};
use actix_web::http::header::{self, HeaderValue};
use actix_web::http::StatusCode;
use actix_web::{HttpRequest, HttpResponse, ResponseError};
use domain::error::{
    AuthorizeError, BalanceError, ChargeError, GetReservationError, IssueTokenError, ListConcertsError,
    ListSchedulesError, ListSeatsError, PayError, ReadTokenError, ReserveError,
};
use domain::ports::StoreError;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

/// Seconds a client is told to wait (`Retry-After`) when the store is unreachable.
pub const RETRY_AFTER_SECS: u32 = 1;

/// The media type of every error body.
pub const PROBLEM_JSON: &str = "application/problem+json";

/// Every `code` an error body can carry, with its HTTP status: the contract's table, plus
/// `METHOD_NOT_ALLOWED` and `INTERNAL` for the cases it leaves to us.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum ErrorCode {
    /// 400: malformed JSON, wrong types, missing or unknown fields, malformed ids.
    InvalidRequest,
    /// 400: a charge amount that is not an integer in `1..=1_000_000_000`.
    InvalidAmount,
    /// 401: no `Authorization: Bearer <token>` header.
    TokenMissing,
    /// 401: a bearer token that is unknown, malformed or forged.
    TokenInvalid,
    /// 401: the token's TTL ran out, or a payment used it up.
    TokenExpired,
    /// 402: the balance does not cover the price.
    InsufficientBalance,
    /// 403: the token is still WAITING.
    TokenNotActive,
    /// 404: unknown resource, or another user's reservation; also unknown routes.
    NotFound,
    /// 405: the route exists but not with this method.
    MethodNotAllowed,
    /// 409: the seat is held or sold.
    SeatUnavailable,
    /// 409: the hold ran out before payment.
    HoldExpired,
    /// 409: the reservation is already paid.
    AlreadyPaid,
    /// 409: the charge would take the balance above 10,000,000,000.
    BalanceLimit,
    /// 413: the body is over 16 KiB.
    PayloadTooLarge,
    /// 500: the server is broken; the cause is in the logs only.
    Internal,
    /// 503: the store is unreachable; retry after `Retry-After` seconds.
    Unavailable,
}

impl ErrorCode {
    /// The HTTP status this code is answered with.
    #[must_use]
    pub const fn status(self) -> StatusCode {
        match self {
            Self::InvalidRequest | Self::InvalidAmount => StatusCode::BAD_REQUEST,
            Self::TokenMissing | Self::TokenInvalid | Self::TokenExpired => StatusCode::UNAUTHORIZED,
            Self::InsufficientBalance => StatusCode::PAYMENT_REQUIRED,
            Self::TokenNotActive => StatusCode::FORBIDDEN,
            Self::NotFound => StatusCode::NOT_FOUND,
            Self::MethodNotAllowed => StatusCode::METHOD_NOT_ALLOWED,
            Self::SeatUnavailable | Self::HoldExpired | Self::AlreadyPaid | Self::BalanceLimit => StatusCode::CONFLICT,
            Self::PayloadTooLarge => StatusCode::PAYLOAD_TOO_LARGE,
            Self::Internal => StatusCode::INTERNAL_SERVER_ERROR,
            Self::Unavailable => StatusCode::SERVICE_UNAVAILABLE,
        }
    }

    /// The contract's spelling of the code.
    #[must_use]
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::InvalidRequest => "INVALID_REQUEST",
            Self::InvalidAmount => "INVALID_AMOUNT",
            Self::TokenMissing => "TOKEN_MISSING",
            Self::TokenInvalid => "TOKEN_INVALID",
            Self::TokenExpired => "TOKEN_EXPIRED",
            Self::InsufficientBalance => "INSUFFICIENT_BALANCE",
            Self::TokenNotActive => "TOKEN_NOT_ACTIVE",
            Self::NotFound => "NOT_FOUND",
            Self::MethodNotAllowed => "METHOD_NOT_ALLOWED",
            Self::SeatUnavailable => "SEAT_UNAVAILABLE",
            Self::HoldExpired => "HOLD_EXPIRED",
            Self::AlreadyPaid => "ALREADY_PAID",
            Self::BalanceLimit => "BALANCE_LIMIT",
            Self::PayloadTooLarge => "PAYLOAD_TOO_LARGE",
            Self::Internal => "INTERNAL",
            Self::Unavailable => "UNAVAILABLE",
        }
    }

    /// A short, fixed, human-readable summary (the problem's `title`).
    #[must_use]
    pub const fn title(self) -> &'static str {
        match self {
            Self::InvalidRequest => "Invalid request",
            Self::InvalidAmount => "Invalid amount",
            Self::TokenMissing => "Queue token missing",
            Self::TokenInvalid => "Queue token invalid",
            Self::TokenExpired => "Queue token expired",
            Self::InsufficientBalance => "Insufficient balance",
            Self::TokenNotActive => "Queue token not active",
            Self::NotFound => "Not found",
            Self::MethodNotAllowed => "Method not allowed",
            Self::SeatUnavailable => "Seat unavailable",
            Self::HoldExpired => "Hold expired",
            Self::AlreadyPaid => "Already paid",
            Self::BalanceLimit => "Balance limit exceeded",
            Self::PayloadTooLarge => "Payload too large",
            Self::Internal => "Internal server error",
            Self::Unavailable => "Service unavailable",
        }
    }

    /// The problem `type`: a relative URI naming the kind of problem, stable per code.
    #[must_use]
    pub fn type_uri(self) -> String {
        format!("/problems/{}", self.as_str().to_ascii_lowercase().replace('_', "-"))
    }
}

impl fmt::Display for ErrorCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

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
    /// A URI reference naming the kind of problem.
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

/// An error answered as problem details. Build it from a domain error (`?` does it), or with
/// the constructors for the HTTP-level cases.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiError {
    code: ErrorCode,
    detail: String,
}

impl ApiError {
    /// An error with a client-safe `detail`.
    #[must_use]
    pub fn new(code: ErrorCode, detail: impl Into<String>) -> Self {
        Self { code, detail: detail.into() }
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
    pub fn token_missing() -> Self {
        Self::new(ErrorCode::TokenMissing, "send the queue token as `Authorization: Bearer <token>`")
    }

    /// 404 `NOT_FOUND`.
    #[must_use]
    pub fn not_found(detail: impl Into<String>) -> Self {
        Self::new(ErrorCode::NotFound, detail)
    }

    /// 405 `METHOD_NOT_ALLOWED`.
    #[must_use]
    pub fn method_not_allowed() -> Self {
        Self::new(ErrorCode::MethodNotAllowed, "this resource does not support this method")
    }

    /// 413 `PAYLOAD_TOO_LARGE`.
    #[must_use]
    pub fn payload_too_large() -> Self {
        Self::new(ErrorCode::PayloadTooLarge, format!("request bodies are limited to {} bytes", crate::BODY_LIMIT))
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
        tracing::warn!(cause = %cause, "store unavailable");
        Self::new(ErrorCode::Unavailable, "the service is temporarily unavailable; retry later")
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

impl ResponseError for ApiError {
    fn status_code(&self) -> StatusCode {
        self.code.status()
    }

    fn error_response(&self) -> HttpResponse {
        let mut res = HttpResponse::build(self.status_code());
        res.insert_header((header::CONTENT_TYPE, HeaderValue::from_static(PROBLEM_JSON)));
        match self.code {
            ErrorCode::Unavailable => {
                res.insert_header((header::RETRY_AFTER, RETRY_AFTER_SECS));
            }
            ErrorCode::TokenMissing | ErrorCode::TokenInvalid | ErrorCode::TokenExpired => {
                res.insert_header((header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer")));
            }
            _ => {}
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
// Each `From` is an exhaustive match: a new variant in the domain fails to compile here until it
// is given a status and a code.

impl From<StoreError> for ApiError {
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::Unavailable(cause) => Self::unavailable(&cause),
            StoreError::Internal(cause) => Self::internal(&cause),
        }
    }
}

impl From<IssueTokenError> for ApiError {
    fn from(e: IssueTokenError) -> Self {
        match e {
            IssueTokenError::Store(s) => s.into(),
        }
    }
}

impl From<ReadTokenError> for ApiError {
    fn from(e: ReadTokenError) -> Self {
        match e {
            ReadTokenError::Invalid => Self::new(ErrorCode::TokenInvalid, "the queue token is unknown or malformed"),
            ReadTokenError::Store(s) => s.into(),
        }
    }
}

impl From<AuthorizeError> for ApiError {
    fn from(e: AuthorizeError) -> Self {
        match e {
            AuthorizeError::Invalid => Self::new(ErrorCode::TokenInvalid, "the queue token is unknown or malformed"),
            AuthorizeError::Expired => {
                Self::new(ErrorCode::TokenExpired, "the queue token has expired; take a new place in line")
            }
            AuthorizeError::NotActive => {
                Self::new(ErrorCode::TokenNotActive, "the queue token is still waiting to be admitted")
            }
            AuthorizeError::Store(s) => s.into(),
        }
    }
}

impl From<ListConcertsError> for ApiError {
    fn from(e: ListConcertsError) -> Self {
        match e {
            ListConcertsError::Store(s) => s.into(),
        }
    }
}

impl From<ListSchedulesError> for ApiError {
    fn from(e: ListSchedulesError) -> Self {
        match e {
            ListSchedulesError::NotFound => Self::not_found("no such concert"),
            ListSchedulesError::Store(s) => s.into(),
        }
    }
}

impl From<ListSeatsError> for ApiError {
    fn from(e: ListSeatsError) -> Self {
        match e {
            ListSeatsError::NotFound => Self::not_found("no such schedule"),
            ListSeatsError::Store(s) => s.into(),
        }
    }
}

impl From<ReserveError> for ApiError {
    fn from(e: ReserveError) -> Self {
        match e {
            ReserveError::NotFound => Self::not_found("no such seat in a schedule open for booking"),
            ReserveError::SeatUnavailable => Self::new(ErrorCode::SeatUnavailable, "the seat is held or sold"),
            ReserveError::Store(s) => s.into(),
        }
    }
}

impl From<GetReservationError> for ApiError {
    fn from(e: GetReservationError) -> Self {
        match e {
            GetReservationError::NotFound => Self::not_found("no such reservation"),
            GetReservationError::Store(s) => s.into(),
        }
    }
}

impl From<PayError> for ApiError {
    fn from(e: PayError) -> Self {
        match e {
            PayError::NotFound => Self::not_found("no such reservation"),
            PayError::HoldExpired => Self::new(ErrorCode::HoldExpired, "the hold on this seat has expired"),
            PayError::AlreadyPaid => Self::new(ErrorCode::AlreadyPaid, "the reservation is already paid"),
            PayError::InsufficientBalance { balance, price } => Self::new(
                ErrorCode::InsufficientBalance,
                format!("the balance of {} won is below the price of {} won", balance.get(), price.get()),
            ),
            PayError::Store(s) => s.into(),
        }
    }
}

impl From<BalanceError> for ApiError {
    fn from(e: BalanceError) -> Self {
        match e {
            BalanceError::Store(s) => s.into(),
        }
    }
}

impl From<ChargeError> for ApiError {
    fn from(e: ChargeError) -> Self {
        match e {
            ChargeError::InvalidAmount => Self::invalid_amount(),
            ChargeError::BalanceLimit { balance, amount } => Self::new(
                ErrorCode::BalanceLimit,
                format!(
                    "a balance of {} won plus {} won would exceed the limit of {} won",
                    balance.get(),
                    amount.get(),
                    domain::money::BALANCE_LIMIT.get()
                ),
            ),
            ChargeError::Store(s) => s.into(),
        }
    }
}

impl From<BlockingError> for ApiError {
    fn from(e: BlockingError) -> Self {
        // The blocking pool is gone or the task panicked: the server is broken, not the request.
        Self::internal(&e)
    }
}

// ---- actix extractor rejections -------------------------------------------------------------
// Installed as the error handlers of `JsonConfig`, `PathConfig`, `QueryConfig` and
// `PayloadConfig` (see `crate::configure`), so no rejection is answered with actix's plain text.

/// `JsonConfig` error handler.
pub fn json_error(err: JsonPayloadError, _req: &HttpRequest) -> actix_web::Error {
    let api = match err {
        JsonPayloadError::OverflowKnownLength { .. } | JsonPayloadError::Overflow { .. } => {
            ApiError::payload_too_large()
        }
        JsonPayloadError::ContentType => {
            ApiError::invalid_request("the body must be JSON (Content-Type: application/json)")
        }
        JsonPayloadError::Deserialize(e) => ApiError::invalid_request(json_detail(&e)),
        JsonPayloadError::Payload(e) => payload_error(e),
        other => ApiError::invalid_request(format!("unreadable body: {}", short(&other.to_string()))),
    };
    api.into()
}

fn payload_error(err: PayloadError) -> ApiError {
    match err {
        PayloadError::Overflow => ApiError::payload_too_large(),
        _ => ApiError::invalid_request("the request body could not be read"),
    }
}

/// `PathConfig` error handler: a malformed id in the path.
pub fn path_error(err: PathError, _req: &HttpRequest) -> actix_web::Error {
    let PathError::Deserialize(e) = err else {
        return ApiError::invalid_request("malformed path").into();
    };
    ApiError::invalid_request(format!("malformed id in path: {}", short(&e.to_string()))).into()
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
fn short(s: &str) -> String {
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
    use super::*;

    #[test]
    fn every_code_has_the_contract_status() {
        let table = [
            (ErrorCode::InvalidRequest, 400, "INVALID_REQUEST"),
            (ErrorCode::InvalidAmount, 400, "INVALID_AMOUNT"),
            (ErrorCode::TokenMissing, 401, "TOKEN_MISSING"),
            (ErrorCode::TokenInvalid, 401, "TOKEN_INVALID"),
            (ErrorCode::TokenExpired, 401, "TOKEN_EXPIRED"),
            (ErrorCode::InsufficientBalance, 402, "INSUFFICIENT_BALANCE"),
            (ErrorCode::TokenNotActive, 403, "TOKEN_NOT_ACTIVE"),
            (ErrorCode::NotFound, 404, "NOT_FOUND"),
            (ErrorCode::MethodNotAllowed, 405, "METHOD_NOT_ALLOWED"),
            (ErrorCode::SeatUnavailable, 409, "SEAT_UNAVAILABLE"),
            (ErrorCode::HoldExpired, 409, "HOLD_EXPIRED"),
            (ErrorCode::AlreadyPaid, 409, "ALREADY_PAID"),
            (ErrorCode::BalanceLimit, 409, "BALANCE_LIMIT"),
            (ErrorCode::PayloadTooLarge, 413, "PAYLOAD_TOO_LARGE"),
            (ErrorCode::Internal, 500, "INTERNAL"),
            (ErrorCode::Unavailable, 503, "UNAVAILABLE"),
        ];
        for (code, status, text) in table {
            assert_eq!(code.status().as_u16(), status, "{text}");
            assert_eq!(code.as_str(), text);
            assert_eq!(serde_json::to_value(code).unwrap(), serde_json::json!(text));
        }
    }

    #[test]
    fn store_failures_never_reach_the_body() {
        let e: ApiError = StoreError::Internal("relation \"seats\" does not exist".into()).into();
        assert_eq!(e.code(), ErrorCode::Internal);
        assert!(!e.detail().contains("seats"));
        let e: ApiError = StoreError::Unavailable("connection refused 10.0.0.1".into()).into();
        assert_eq!(e.code(), ErrorCode::Unavailable);
        assert!(!e.detail().contains("refused"));
    }

    #[test]
    fn unavailable_answers_retry_after_and_problem_json() {
        let res = ApiError::unavailable(&"down").error_response();
        assert_eq!(res.status(), StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(res.headers().get(header::RETRY_AFTER).unwrap(), "1");
        assert_eq!(res.headers().get(header::CONTENT_TYPE).unwrap(), PROBLEM_JSON);
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
    fn long_texts_are_cut_on_a_char_boundary() {
        let s = "é".repeat(300);
        assert!(short(&s).len() <= 200 + '…'.len_utf8());
    }
}
