//! Extractors: the bearer token, the proof of an ACTIVE one, and strict JSON bodies.
//!
//! [`Authorized`] is the only way a handler gets an [`ActiveUser`], and the domain's protected
//! use cases take one, so a protected handler cannot forget to check the token: it would not
//! compile.

use std::future::Future;
use std::pin::Pin;

use actix_web::dev::Payload;
use actix_web::http::header;
use actix_web::{web, FromRequest, HttpRequest};
use domain::service::ActiveUser;
use serde::de::DeserializeOwned;

use crate::error::{json_detail, ApiError};
use crate::state::{blocking, ApiState};

/// The raw token of an `Authorization: Bearer <token>` header. Whether it is known is not
/// checked here.
#[derive(Debug, Clone)]
pub struct Bearer(pub String);

/// Parses `Authorization: Bearer <token>`; the scheme is case-insensitive (RFC 9110 §11.1).
fn bearer_of(req: &HttpRequest) -> Result<String, ApiError> {
    let value = req.headers().get(header::AUTHORIZATION).ok_or_else(ApiError::token_missing)?;
    let value = value.to_str().map_err(|_| ApiError::token_missing())?.trim();
    let (scheme, token) = value.split_once(' ').ok_or_else(ApiError::token_missing)?;
    let token = token.trim();
    if !scheme.eq_ignore_ascii_case("bearer") || token.is_empty() {
        return Err(ApiError::token_missing());
    }
    Ok(token.to_owned())
}

impl FromRequest for Bearer {
    type Error = ApiError;
    type Future = std::future::Ready<Result<Self, ApiError>>;

    fn from_request(req: &HttpRequest, _: &mut Payload) -> Self::Future {
        std::future::ready(bearer_of(req).map(Self))
    }
}

/// A request whose bearer token is ACTIVE and unexpired: `TOKEN_MISSING`, `TOKEN_INVALID`,
/// `TOKEN_EXPIRED` or `TOKEN_NOT_ACTIVE` otherwise.
#[derive(Debug, Clone)]
pub struct Authorized(pub ActiveUser);

impl FromRequest for Authorized {
    type Error = ApiError;
    type Future = Pin<Box<dyn Future<Output = Result<Self, ApiError>>>>;

    fn from_request(req: &HttpRequest, _: &mut Payload) -> Self::Future {
        let bearer = bearer_of(req);
        let state = req.app_data::<web::Data<ApiState>>().cloned();
        Box::pin(async move {
            let bearer = bearer?;
            let state = state.ok_or_else(|| ApiError::internal(&"ApiState is not registered"))?;
            let user = blocking(move || state.ticketing().authorize(&bearer)).await?;
            Ok(Self(user))
        })
    }
}

/// A JSON request body that must be an object of exactly `T`'s fields.
///
/// `web::Json<T>` alone would also accept a JSON array for a struct (serde reads a sequence as
/// the fields in order), so `[scheduleId, seatId]` would pass: the body is read as an object
/// first and only then as `T`. Every failure is a 400 `INVALID_REQUEST` (or 413), answered by
/// the `JsonConfig` handler or here.
#[derive(Debug, Clone)]
pub struct Body<T>(pub T);

impl<T: DeserializeOwned + 'static> FromRequest for Body<T> {
    type Error = actix_web::Error;
    type Future = Pin<Box<dyn Future<Output = Result<Self, actix_web::Error>>>>;

    fn from_request(req: &HttpRequest, payload: &mut Payload) -> Self::Future {
        let object = web::Json::<serde_json::Map<String, serde_json::Value>>::from_request(req, payload);
        Box::pin(async move {
            let object = object.await?.into_inner();
            serde_json::from_value(serde_json::Value::Object(object))
                .map(Self)
                .map_err(|e| ApiError::invalid_request(json_detail(&e)).into())
        })
    }
}
