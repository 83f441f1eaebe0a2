//! The HTTP adapter: the public contract (`shared/api.md`) served with actix-web on top of the
//! domain's use cases. It translates and decides nothing: JSON and paths in, one
//! [`domain::service::Ticketing`] call on the blocking pool, JSON or problem details out. It
//! depends on `domain` only; the app hands it a `Ticketing` wired to some store and a
//! [`Readiness`] probe for that store.
//!
//! # Layout
//! - [`configure`]: routes, extractor configs and fallbacks, to mount with `App::configure`.
//! - [`routes`]: one handler per endpoint, each documented for OpenAPI.
//! - [`extract`]: the bearer token, the [`extract::Authorized`] proof of an ACTIVE one, and
//!   strict JSON bodies ([`extract::Body`]).
//! - [`dto`]: request and response bodies.
//! - [`error`]: the single mapping of every failure to problem+json.
//! - [`state`]: the shared [`ApiState`] and the [`Readiness`] probe.
//! - [`openapi`]: the generated OpenAPI 3 document.

pub mod dto;
pub mod error;
pub mod extract;
pub mod openapi;
pub mod routes;
pub mod state;

use actix_web::body::MessageBody;
use actix_web::dev::{ServiceRequest, ServiceResponse};
use actix_web::http::header;
use actix_web::middleware::{from_fn, Next};
use actix_web::{web, ResponseError};

pub use error::{ApiError, ErrorCode, Problem};
pub use state::{ApiState, Readiness};

/// The largest request body accepted (16 KiB); larger ones get 413 `PAYLOAD_TOO_LARGE`.
pub const BODY_LIMIT: usize = 16 * 1024;

/// Mounts the whole API: `App::new().configure(adapters_http::configure(state))`.
pub fn configure(state: ApiState) -> impl FnOnce(&mut web::ServiceConfig) {
    move |cfg| {
        cfg.app_data(web::Data::new(state))
            .app_data(web::JsonConfig::default().limit(BODY_LIMIT).error_handler(error::json_error))
            .app_data(web::PathConfig::default().error_handler(error::path_error))
            .app_data(web::QueryConfig::default().error_handler(error::query_error))
            .app_data(web::PayloadConfig::new(BODY_LIMIT))
            .service(
                // An empty-prefix scope so the body-size guard and the 404 fallback cover every
                // path, including unknown ones.
                web::scope("")
                    .wrap(from_fn(reject_oversized))
                    .wrap(from_fn(enforce_deadline))
                    .service(resource("/queue/tokens", "POST").route(web::post().to(routes::issue_token)))
                    .service(resource("/queue/token", "GET").route(web::get().to(routes::read_token)))
                    .service(resource("/concerts", "GET").route(web::get().to(routes::list_concerts)))
                    .service(
                        resource("/concerts/{concertId}/schedules", "GET").route(web::get().to(routes::list_schedules)),
                    )
                    .service(resource("/schedules/{scheduleId}/seats", "GET").route(web::get().to(routes::list_seats)))
                    .service(resource("/reservations", "POST").route(web::post().to(routes::reserve)))
                    .service(
                        resource("/reservations/{reservationId}", "GET").route(web::get().to(routes::get_reservation)),
                    )
                    .service(resource("/payments", "POST").route(web::post().to(routes::pay)))
                    .service(resource("/users/{userId}/balance", "GET").route(web::get().to(routes::get_balance)))
                    .service(resource("/users/{userId}/balance/charge", "POST").route(web::post().to(routes::charge)))
                    .service(
                        resource("/users/{userId}/balance/history", "GET")
                            .route(web::get().to(routes::balance_history)),
                    )
                    .service(resource("/health/live", "GET").route(web::get().to(routes::live)))
                    .service(resource("/health/ready", "GET").route(web::get().to(routes::ready)))
                    .service(resource("/openapi.json", "GET").route(web::get().to(routes::openapi)))
                    .default_service(web::to(routes::not_found)),
            );
    }
}

/// A resource whose unmatched methods get a 405 problem naming the `allow`ed ones.
fn resource(path: &str, allow: &'static str) -> actix_web::Resource {
    web::resource(path).default_service(web::to(move || routes::method_not_allowed(allow)))
}

/// Answers 503 `UNAVAILABLE` when a request outlives the state's deadline, so a store that
/// hangs (a black-holed host, a stuck lock) never hangs the client. The blocking call it waited
/// for cannot be cancelled and finishes on its own; its result is dropped.
async fn enforce_deadline(
    req: ServiceRequest,
    next: Next<impl MessageBody + 'static>,
) -> Result<ServiceResponse<impl MessageBody>, actix_web::Error> {
    let deadline = req.app_data::<web::Data<ApiState>>().map_or(state::DEFAULT_DEADLINE, |s| s.deadline());
    match actix_web::rt::time::timeout(deadline, next.call(req)).await {
        Ok(res) => res,
        // The request was moved into the timed-out call, so the problem travels as an error;
        // actix renders it through `ApiError::error_response` like any other.
        Err(_elapsed) => Err(ApiError::unavailable(&format_args!("request exceeded its {deadline:?} deadline")).into()),
    }
}

/// Answers 413 before routing when the declared body is too large, so the limit holds on every
/// path and before any token is checked; bodies without a length are cut by the extractors'
/// limits instead.
async fn reject_oversized(
    req: ServiceRequest,
    next: Next<impl MessageBody + 'static>,
) -> Result<ServiceResponse<impl MessageBody>, actix_web::Error> {
    let declared = req
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<u64>().ok());
    if declared.is_some_and(|len| len > BODY_LIMIT as u64) {
        let res = ApiError::payload_too_large().error_response();
        return Ok(req.into_response(res).map_into_right_body());
    }
    next.call(req).await.map(ServiceResponse::map_into_left_body)
}
