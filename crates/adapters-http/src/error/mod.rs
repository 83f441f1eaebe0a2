//! The one place where failures become HTTP: every domain error enum and every rejection of the
//! HTTP layer (extractors, body reading, routing, rate limit, store slots) is mapped here,
//! exhaustively, to a status and a contract `code`, and answered as RFC 9457 problem details
//! (`application/problem+json`).
//!
//! The codes, their statuses, titles and descriptions are one table ([`ErrorCode`], declared
//! by the `codes!` macro below); the spelling comes from `strum` once. The same table answers
//! `GET /problems/{slug}`, the documentation page each problem's `type` URI points to, and the
//! OpenAPI response rows (`crate::responses::Fails`).
//!
//! Store failures are logged here, once, with their cause, and counted in
//! `store_errors_total{kind}`; clients get a fixed text that never names SQL, types or
//! internals.

use std::fmt;

use actix_web::http::header::{self, HeaderValue};
use actix_web::http::StatusCode;
use actix_web::{HttpResponse, ResponseError};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

/// Seconds a client is told to wait (`Retry-After`) when the store is unavailable, when no
/// store slot came free in time, or when a request with the same `Idempotency-Key` is running.
pub const RETRY_AFTER_SECS: u64 = 1;

/// The media type of every error body.
pub const PROBLEM_JSON: &str = "application/problem+json";

/// Where the problem type documents live: `type` is `/problems/<slug>`.
pub const PROBLEM_BASE: &str = "/problems/";

mod code;
mod mapping;
mod rejections;

pub use code::ErrorCode;
pub use mapping::ErrorRows;
pub(crate) use rejections::{json_detail, payload_error};
pub use rejections::{json_error, path_error, query_error};

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
    /// Members some problems add: `roomId` (ROOM_MISMATCH: the room to join), `opensAt` and
    /// `prequeueOpensAt` (ROOM_NOT_OPEN).
    #[serde(flatten, default, skip_serializing_if = "serde_json::Map::is_empty")]
    #[schema(value_type = Object)]
    pub extensions: serde_json::Map<String, serde_json::Value>,
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
    extensions: serde_json::Map<String, serde_json::Value>,
    retry_after: u64,
    realm: Realm,
    allow: Option<&'static str>,
}

impl ApiError {
    /// An error with a client-safe `detail`.
    #[must_use]
    pub fn new(code: ErrorCode, detail: impl Into<String>) -> Self {
        Self {
            code,
            detail: detail.into(),
            extensions: serde_json::Map::new(),
            retry_after: RETRY_AFTER_SECS,
            realm: Realm::Queue,
            allow: None,
        }
    }

    /// The same error with a member added to its problem body.
    #[must_use]
    pub fn with(mut self, member: &str, value: impl Into<serde_json::Value>) -> Self {
        self.extensions.insert(member.to_owned(), value.into());
        self
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
            extensions: self.extensions.clone(),
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

#[cfg(test)]
mod tests {
    use actix_web::error::{JsonPayloadError, PayloadError};
    use domain::error::{AuthorizeError, KeyConflict, PayError, ReserveError, StoreError};
    use strum::VariantArray as _;

    use super::rejections::short;
    use super::*;
    use crate::responses::Fails;

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
            (ErrorCode::RoomMismatch, 403, "ROOM_MISMATCH"),
            (ErrorCode::NotFound, 404, "NOT_FOUND"),
            (ErrorCode::MethodNotAllowed, 405, "METHOD_NOT_ALLOWED"),
            (ErrorCode::RequestTimeout, 408, "REQUEST_TIMEOUT"),
            (ErrorCode::SeatUnavailable, 409, "SEAT_UNAVAILABLE"),
            (ErrorCode::HoldExpired, 409, "HOLD_EXPIRED"),
            (ErrorCode::AlreadyPaid, 409, "ALREADY_PAID"),
            (ErrorCode::BalanceLimit, 409, "BALANCE_LIMIT"),
            (ErrorCode::HoldLimit, 409, "HOLD_LIMIT"),
            (ErrorCode::IdempotencyKeyInFlight, 409, "IDEMPOTENCY_KEY_IN_FLIGHT"),
            (ErrorCode::RoomNotOpen, 409, "ROOM_NOT_OPEN"),
            (ErrorCode::RoomClosed, 409, "ROOM_CLOSED"),
            (ErrorCode::RoomExists, 409, "ROOM_EXISTS"),
            (ErrorCode::ConcertInRoom, 409, "CONCERT_IN_ROOM"),
            (ErrorCode::RoomAlreadyOpen, 409, "ROOM_ALREADY_OPEN"),
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
