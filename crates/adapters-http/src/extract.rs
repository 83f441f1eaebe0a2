//! Extractors: bearer tokens (queue and operator), the `Idempotency-Key` header, ids in the
//! contract's form, and strict JSON bodies read within a size limit and a time limit.
//!
//! A protected handler takes a [`Bearer`] and calls [`crate::state::ApiState::as_active`],
//! which checks the token and runs the use case in one store hop; the domain's protected use
//! cases take the `ActiveUser` only that check makes, so a handler cannot forget it.

use std::future::{ready, Future, Ready};
use std::pin::Pin;

use actix_web::dev::Payload;
use actix_web::http::header;
use actix_web::web::{Bytes, BytesMut};
use actix_web::{web, FromRequest, HttpRequest};
use domain::idempotency::IdempotencyKey;
use domain::ids::UserId;
use futures_util::StreamExt as _;
use serde::de::DeserializeOwned;
use uuid::Uuid;

use crate::error::{json_detail, payload_error, ApiError, Realm};
use crate::state::ApiState;
use crate::wire::canonical_uuid;

/// The largest body of the public API (16 KiB); larger ones get 413 `PAYLOAD_TOO_LARGE`.
pub const BODY_LIMIT: usize = 16 * 1024;

/// The largest body under `/admin` (4 MiB: a concert of 50,000 seats).
pub const ADMIN_BODY_LIMIT: usize = 4 * 1024 * 1024;

/// The body limit of a path: [`ADMIN_BODY_LIMIT`] under `/admin`, [`BODY_LIMIT`] elsewhere.
#[must_use]
pub fn body_limit(path: &str) -> usize {
    if path == "/admin" || path.starts_with("/admin/") {
        ADMIN_BODY_LIMIT
    } else {
        BODY_LIMIT
    }
}

/// Parses `Authorization: Bearer <token>`; the scheme is case-insensitive (RFC 9110 §11.1).
fn bearer_of(req: &HttpRequest, realm: Realm) -> Result<String, ApiError> {
    let missing = || ApiError::token_missing(realm);
    let value = req.headers().get(header::AUTHORIZATION).ok_or_else(missing)?;
    let value = value.to_str().map_err(|_| missing())?.trim();
    let (scheme, token) = value.split_once(' ').ok_or_else(missing)?;
    let token = token.trim();
    if !scheme.eq_ignore_ascii_case("bearer") || token.is_empty() {
        return Err(missing());
    }
    Ok(token.to_owned())
}

/// The raw queue token of an `Authorization: Bearer <token>` header (`TOKEN_MISSING`
/// without one). Whether it is known is the domain's question.
#[derive(Clone)]
pub struct Bearer(String);

impl Bearer {
    /// The token as sent.
    #[must_use]
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

// A bearer is a credential: never print it whole.
impl std::fmt::Debug for Bearer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Bearer({}…)", self.0.get(..8).unwrap_or(""))
    }
}

impl FromRequest for Bearer {
    type Error = ApiError;
    type Future = Ready<Result<Self, ApiError>>;

    fn from_request(req: &HttpRequest, _: &mut Payload) -> Self::Future {
        ready(bearer_of(req, Realm::Queue).map(Self))
    }
}

/// Who a request that names a user may act for.
///
/// With identity off (no `AUTH_ISSUER`) it holds nothing and the request's own `userId` is
/// trusted, as the seed's contract has it. With identity on it holds the user of the verified
/// `Authorization: Bearer <JWT>`: 401 `IDENTITY_MISSING` without one, `IDENTITY_INVALID` for one
/// that does not verify, 503 when no signing key can be had yet.
#[derive(Debug, Clone, Copy)]
pub struct Signed(Option<UserId>);

impl Signed {
    /// The verified user, when identity is on.
    #[must_use]
    pub fn verified(&self) -> Option<UserId> {
        self.0
    }

    /// The user the request acts for: with identity off, the one it `named` (400 when it named
    /// none); with identity on, the signed-in user, which `named` may repeat but not contradict.
    ///
    /// # Errors
    /// 403 `FORBIDDEN` when `named` is another user than the signed-in one; 400 when identity is
    /// off and no user is named.
    pub fn acting_for(&self, named: Option<UserId>) -> Result<UserId, ApiError> {
        match (self.0, named) {
            (Some(signed), Some(named)) if signed != named => Err(ApiError::forbidden()),
            (Some(signed), _) => Ok(signed),
            (None, Some(named)) => Ok(named),
            (None, None) => Err(ApiError::invalid_request("invalid JSON body: missing field `userId`")),
        }
    }
}

impl FromRequest for Signed {
    type Error = ApiError;
    type Future = Pin<Box<dyn Future<Output = Result<Self, ApiError>>>>;

    fn from_request(req: &HttpRequest, _: &mut Payload) -> Self::Future {
        let checked = state_of(req)
            .map(|state| state.identity().cloned().map(|identity| (identity, bearer_of(req, Realm::Identity))));
        Box::pin(async move {
            match checked? {
                None => Ok(Self(None)),
                Some((identity, bearer)) => Ok(Self(Some(identity.verify(&bearer?).await?))),
            }
        })
    }
}

/// A request made with the operator token; holds the operator's short id (the first 8 hex
/// digits of the token's SHA-256), which the use cases log as the actor. `TOKEN_MISSING` or
/// `TOKEN_INVALID` otherwise (a queue token included); 404 when the operator API is off.
#[derive(Debug, Clone)]
pub struct Operator(pub String);

impl FromRequest for Operator {
    type Error = ApiError;
    type Future = Ready<Result<Self, ApiError>>;

    fn from_request(req: &HttpRequest, _: &mut Payload) -> Self::Future {
        ready(operator_of(req).map(Self))
    }
}

fn operator_of(req: &HttpRequest) -> Result<String, ApiError> {
    let state = state_of(req)?;
    if !state.admin_enabled() {
        return Err(ApiError::not_found("no such route"));
    }
    let token = bearer_of(req, Realm::Admin)?;
    state.operator(&token).ok_or_else(ApiError::admin_token_invalid)
}

/// `GET /metrics` access: the operator token when one is configured, open otherwise.
#[derive(Debug, Clone, Copy)]
pub struct MetricsAccess;

impl FromRequest for MetricsAccess {
    type Error = ApiError;
    type Future = Ready<Result<Self, ApiError>>;

    fn from_request(req: &HttpRequest, _: &mut Payload) -> Self::Future {
        ready(state_of(req).and_then(
            |state| {
                if state.admin_enabled() {
                    operator_of(req).map(|_| Self)
                } else {
                    Ok(Self)
                }
            },
        ))
    }
}

pub(crate) fn state_of(req: &HttpRequest) -> Result<web::Data<ApiState>, ApiError> {
    req.app_data::<web::Data<ApiState>>().cloned().ok_or_else(|| ApiError::internal(&"ApiState is not registered"))
}

/// The optional `Idempotency-Key` header: 1 to 255 visible ASCII characters, else 400
/// `INVALID_REQUEST`.
#[derive(Debug, Clone)]
pub struct IdemKey(pub Option<IdempotencyKey>);

impl FromRequest for IdemKey {
    type Error = ApiError;
    type Future = Ready<Result<Self, ApiError>>;

    fn from_request(req: &HttpRequest, _: &mut Payload) -> Self::Future {
        let mut values = req.headers().get_all("idempotency-key");
        let result = match (values.next(), values.next()) {
            (None, _) => Ok(Self(None)),
            (Some(_), Some(_)) => Err(ApiError::invalid_request("send one Idempotency-Key header, not several")),
            (Some(v), None) => {
                v.to_str().ok().and_then(|s| IdempotencyKey::parse(s).ok()).map(|k| Self(Some(k))).ok_or_else(|| {
                    ApiError::invalid_request("an Idempotency-Key has 1 to 255 visible ASCII characters")
                })
            }
        };
        ready(result)
    }
}

/// An id from the path, accepted only in the contract's form (lower-case, hyphenated UUID).
///
/// # Errors
/// 400 `INVALID_REQUEST` naming the parameter.
pub fn path_id<T: From<Uuid>>(value: &str, name: &str) -> Result<T, ApiError> {
    canonical_uuid(value)
        .map(T::from)
        .ok_or_else(|| ApiError::invalid_request(format!("{name} must be a lower-case hyphenated UUID")))
}

/// A JSON request body that must be an object of exactly `T`'s fields, read whole within the
/// path's body limit and the state's body timeout.
///
/// `web::Json<T>` alone would also accept a JSON array for a struct (serde reads a sequence as
/// the fields in order), so `[scheduleId, seatId]` would pass, and would read a key given twice
/// as its last value: [`crate::strict_json`] refuses both before the body is read as `T`. A body shorter than its `Content-Length` is 400 as soon as the
/// client closes its side, and 408 `REQUEST_TIMEOUT` when it stalls past the body timeout: it
/// never waits for a store deadline, and nothing is done either way.
#[derive(Debug, Clone)]
pub struct Body<T>(pub T);

impl<T: DeserializeOwned + 'static> FromRequest for Body<T> {
    type Error = ApiError;
    type Future = Pin<Box<dyn Future<Output = Result<Self, ApiError>>>>;

    fn from_request(req: &HttpRequest, payload: &mut Payload) -> Self::Future {
        let limit = body_limit(req.path());
        let json = is_json(req);
        let timeout = state_of(req).map(|s| s.body_timeout());
        let payload = payload.take();
        Box::pin(async move {
            if !json {
                return Err(ApiError::invalid_request("the body must be JSON (Content-Type: application/json)"));
            }
            let bytes = match actix_web::rt::time::timeout(timeout?, read(payload, limit)).await {
                Ok(bytes) => bytes?,
                Err(_elapsed) => return Err(ApiError::body_timeout()),
            };
            crate::strict_json::from_slice(&bytes).map(Self).map_err(|e| ApiError::invalid_request(json_detail(&e)))
        })
    }
}

/// `application/json` or any `+json` type.
fn is_json(req: &HttpRequest) -> bool {
    let Some(Ok(ct)) = req.headers().get(header::CONTENT_TYPE).map(|v| v.to_str()) else {
        return false;
    };
    let essence = ct.split(';').next().unwrap_or("").trim().to_ascii_lowercase();
    essence == "application/json" || (essence.starts_with("application/") && essence.ends_with("+json"))
}

async fn read(mut payload: Payload, limit: usize) -> Result<Bytes, ApiError> {
    let mut body = BytesMut::new();
    while let Some(chunk) = payload.next().await {
        let chunk = chunk.map_err(|e| payload_error(e, limit))?;
        if body.len() + chunk.len() > limit {
            return Err(ApiError::payload_too_large(limit));
        }
        body.extend_from_slice(&chunk);
    }
    Ok(body.freeze())
}

#[cfg(test)]
mod tests {
    use actix_web::test::TestRequest;

    use super::*;

    #[test]
    fn bearer_needs_the_scheme_and_a_token() {
        let req = |v: &str| TestRequest::default().insert_header((header::AUTHORIZATION, v)).to_http_request();
        assert_eq!(bearer_of(&req("Bearer abc"), Realm::Queue).unwrap(), "abc");
        assert_eq!(bearer_of(&req("bearer  abc "), Realm::Queue).unwrap(), "abc");
        assert!(bearer_of(&req("Basic abc"), Realm::Queue).is_err());
        assert!(bearer_of(&req("Bearer"), Realm::Queue).is_err());
        assert!(bearer_of(&TestRequest::default().to_http_request(), Realm::Queue).is_err());
    }

    #[test]
    fn admin_paths_get_the_larger_limit() {
        assert_eq!(body_limit("/admin/concerts"), ADMIN_BODY_LIMIT);
        assert_eq!(body_limit("/admin"), ADMIN_BODY_LIMIT);
        assert_eq!(body_limit("/administrator"), BODY_LIMIT);
        assert_eq!(body_limit("/payments"), BODY_LIMIT);
    }
}
