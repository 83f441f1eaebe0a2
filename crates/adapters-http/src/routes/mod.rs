//! The handlers, one per endpoint. Each one translates: JSON and path in, one domain call (on
//! a store slot when it touches the store), JSON out. Decisions are the domain's.
//!
//! - [`public`]: the buyer's API (queue, catalogue, reservations, payments, balance).
//! - [`admin`]: the operator API under `/admin`.
//! - [`rooms`]: the on-sales (`/rooms`) and the operator's rooms (`/admin/rooms`).
//! - [`ops`]: health, metrics, the OpenAPI document, `/docs`, problem types, the buyer's page,
//!   and the fallbacks (404, 405).

pub mod admin;
pub mod ops;
pub mod public;
pub mod rooms;

use actix_web::http::StatusCode;
use actix_web::HttpResponse;
use domain::idempotency::{Effect, Outcome, StoredResponse};
use serde::Serialize;

use crate::dto::{BalanceResponse, PaymentResponse};
use crate::error::ApiError;

/// The header that marks a replayed answer of a keyed request.
pub const IDEMPOTENT_REPLAYED: &str = "Idempotent-Replayed";

/// Serialises a body ourselves so that a failure is a problem+json 500, not actix's text.
/// A page's `?limit=` as sent: `None` when absent, the number when it is plain decimal digits
/// that fit a `u32`, `Err` otherwise (the use case checks the range).
pub(crate) fn page_limit(raw: Option<&str>) -> Result<Option<u32>, ()> {
    match raw {
        None => Ok(None),
        Some(s) if !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit()) => s.parse().map(Some).map_err(|_| ()),
        Some(_) => Err(()),
    }
}

pub(crate) fn json<T: Serialize>(status: StatusCode, body: &T) -> Result<HttpResponse, ApiError> {
    let text = serde_json::to_string(body).map_err(|e| ApiError::internal(&e))?;
    Ok(HttpResponse::build(status).content_type("application/json").body(text))
}

/// The response of an effect: the one serializer of charges and payments, used for the answer
/// of an unkeyed request and for the record of a keyed one alike, so a replay is byte for byte
/// what the first answer was.
#[must_use]
pub fn render_effect(effect: &Effect) -> StoredResponse {
    let (status, body) = match effect {
        Effect::Charged { user, balance } => {
            (StatusCode::OK, serde_json::to_string(&BalanceResponse::new(*user, *balance)))
        }
        Effect::Paid(payment) => (StatusCode::CREATED, serde_json::to_string(&PaymentResponse::from(payment.clone()))),
    };
    match body {
        Ok(body) => StoredResponse { status: status.as_u16(), body },
        // Cannot happen for structs of numbers, strings and times; recorded as a failure
        // rather than a success with no body.
        Err(e) => {
            let problem = ApiError::internal(&e).problem();
            StoredResponse { status: problem.status, body: serde_json::to_string(&problem).unwrap_or_default() }
        }
    }
}

/// Sends a stored response: exactly its status and bytes.
fn stored(r: StoredResponse, replayed: bool) -> HttpResponse {
    let status = StatusCode::from_u16(r.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    let mut res = HttpResponse::build(status);
    res.content_type("application/json");
    if replayed {
        res.insert_header((IDEMPOTENT_REPLAYED, "true"));
    }
    res.body(r.body)
}

/// The answer of a (possibly keyed) charge or payment: the recorded bytes when a key recorded
/// them, the same serializer's bytes otherwise, a replay marked as such.
pub(crate) fn answer<T>(outcome: Outcome<T>, effect: impl FnOnce(T) -> Effect) -> HttpResponse {
    match outcome {
        Outcome::Fresh { recorded: Some(r), .. } => stored(r, false),
        Outcome::Fresh { value, recorded: None } => stored(render_effect(&effect(value)), false),
        Outcome::Replayed(r) => stored(r, true),
    }
}
