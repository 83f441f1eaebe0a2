//! Checks made before routing, on every path: the declared body size, and the issue rate limit.
//! Both answer with the same problem+json as the handlers.

use std::net::{IpAddr, Ipv6Addr};

use actix_web::body::{EitherBody, MessageBody};
use actix_web::dev::{ServiceRequest, ServiceResponse};
use actix_web::http::{header, Method};
use actix_web::middleware::Next;
use actix_web::{web, ResponseError};

use crate::error::ApiError;
use crate::extract::body_limit;
use crate::state::ApiState;

/// The path whose requests `ISSUE_RATE_PER_MIN` counts.
pub const ISSUE_PATH: &str = "/queue/tokens";

fn reject<B>(req: ServiceRequest, err: &ApiError) -> ServiceResponse<EitherBody<B>> {
    req.into_response(err.error_response()).map_into_right_body()
}

/// Answers 413 before routing when the declared body is larger than the path's limit, so the
/// limit holds on every path and before any token is checked; bodies without a length are cut
/// by [`crate::extract::Body`] as they stream.
///
/// # Errors
/// Whatever the wrapped service returns.
pub async fn reject_oversized(
    req: ServiceRequest,
    next: Next<impl MessageBody + 'static>,
) -> Result<ServiceResponse<EitherBody<impl MessageBody>>, actix_web::Error> {
    let limit = body_limit(req.path());
    let declared = req
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<u64>().ok());
    if declared.is_some_and(|len| len > limit as u64) {
        return Ok(reject(req, &ApiError::payload_too_large(limit)));
    }
    next.call(req).await.map(ServiceResponse::map_into_left_body)
}

/// Counts every `POST /queue/tokens` against its client address's allowance before anything
/// else reads it, and answers 429 `RATE_LIMITED` with `Retry-After` past it (nothing stored).
///
/// # Errors
/// Whatever the wrapped service returns.
pub async fn limit_issue(
    req: ServiceRequest,
    next: Next<impl MessageBody + 'static>,
) -> Result<ServiceResponse<EitherBody<impl MessageBody>>, actix_web::Error> {
    if req.method() == Method::POST && req.path() == ISSUE_PATH {
        if let Some(state) = req.app_data::<web::Data<ApiState>>() {
            if let Some(limiter) = state.issue_limit() {
                // No peer (a Unix socket, a test request): one shared unknown client.
                let peer = req.peer_addr().map_or(IpAddr::V6(Ipv6Addr::LOCALHOST), |a| a.ip());
                let client = state.proxies().client(peer, req.headers());
                if let Err(wait) = limiter.check(client) {
                    let secs = wait.as_secs() + u64::from(wait.subsec_nanos() > 0);
                    tracing::info!(client = %client, retry_after = secs, "issue rate limit reached");
                    return Ok(reject(req, &ApiError::rate_limited(secs)));
                }
            }
        }
    }
    next.call(req).await.map(ServiceResponse::map_into_left_body)
}
