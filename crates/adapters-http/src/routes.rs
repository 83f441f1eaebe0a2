//! The handlers, one per endpoint of the contract. Each one translates: JSON and path in, one
//! domain call on the blocking pool, JSON out. Decisions are the domain's.

use std::sync::OnceLock;
use std::time::Duration;

use actix_web::http::{header, StatusCode};
use actix_web::{web, HttpResponse, ResponseError};
use domain::ids::{ConcertId, ReservationId, ScheduleId, SeatId, UserId};
use serde::Serialize;
use utoipa::OpenApi;
use uuid::Uuid;

use crate::dto::{
    BalanceResponse, ChargeRequest, ConcertResponse, HealthResponse, IssueTokenRequest, LedgerEntryResponse,
    PayRequest, PaymentResponse, ReservationResponse, ReserveRequest, ScheduleResponse, SeatResponse, TokenResponse,
};
use crate::error::{ApiError, Problem};
use crate::extract::{Authorized, Bearer, Body};
use crate::state::{blocking, ApiState};

/// How long `/health/ready` waits for the store before answering 503: below the contract's
/// 5 s bound even if the store adapter's own timeouts are longer.
pub const READY_TIMEOUT: Duration = Duration::from_secs(3);

/// Serialises a body ourselves so that a failure is a problem+json 500, not actix's text.
fn json<T: Serialize>(status: StatusCode, body: &T) -> Result<HttpResponse, ApiError> {
    let text = serde_json::to_string(body).map_err(|e| ApiError::internal(&e))?;
    Ok(HttpResponse::build(status).content_type("application/json").body(text))
}

// ---- queue ----------------------------------------------------------------------------------

/// Takes a place in line, or returns the user's live token.
#[utoipa::path(
    post, path = "/queue/tokens", tag = "queue",
    request_body = IssueTokenRequest,
    responses(
        (status = 201, description = "A new WAITING token", body = TokenResponse),
        (status = 200, description = "The user's existing WAITING or ACTIVE token", body = TokenResponse),
        (status = 400, description = "INVALID_REQUEST", body = Problem, content_type = "application/problem+json"),
        (status = 413, description = "PAYLOAD_TOO_LARGE", body = Problem, content_type = "application/problem+json"),
        (status = 503, description = "UNAVAILABLE", body = Problem, content_type = "application/problem+json"),
    )
)]
pub async fn issue_token(state: web::Data<ApiState>, body: Body<IssueTokenRequest>) -> Result<HttpResponse, ApiError> {
    let user = UserId::from_uuid(body.0.user_id);
    let issued = blocking(move || state.ticketing().issue_token(user)).await?;
    let status = if issued.created { StatusCode::CREATED } else { StatusCode::OK };
    json(status, &TokenResponse::from(issued.view))
}

/// The token's status, position and estimated wait.
#[utoipa::path(
    get, path = "/queue/token", tag = "queue",
    security(("bearer" = [])),
    responses(
        (status = 200, description = "The token (also when EXPIRED)", body = TokenResponse),
        (status = 401, description = "TOKEN_MISSING, TOKEN_INVALID", body = Problem, content_type = "application/problem+json"),
        (status = 503, description = "UNAVAILABLE", body = Problem, content_type = "application/problem+json"),
    )
)]
pub async fn read_token(state: web::Data<ApiState>, bearer: Bearer) -> Result<HttpResponse, ApiError> {
    let view = blocking(move || state.ticketing().read_token(&bearer.0)).await?;
    json(StatusCode::OK, &TokenResponse::from(view))
}

// ---- catalogue ------------------------------------------------------------------------------

/// Every concert.
#[utoipa::path(
    get, path = "/concerts", tag = "catalogue",
    security(("bearer" = [])),
    responses(
        (status = 200, description = "The concerts", body = [ConcertResponse]),
        (status = 401, description = "TOKEN_MISSING, TOKEN_INVALID, TOKEN_EXPIRED", body = Problem, content_type = "application/problem+json"),
        (status = 403, description = "TOKEN_NOT_ACTIVE", body = Problem, content_type = "application/problem+json"),
        (status = 503, description = "UNAVAILABLE", body = Problem, content_type = "application/problem+json"),
    )
)]
pub async fn list_concerts(state: web::Data<ApiState>, who: Authorized) -> Result<HttpResponse, ApiError> {
    let concerts = blocking(move || state.ticketing().concerts(&who.0)).await?;
    json(StatusCode::OK, &concerts.into_iter().map(ConcertResponse::from).collect::<Vec<_>>())
}

/// A concert's schedules still open for booking, soonest first.
#[utoipa::path(
    get, path = "/concerts/{concertId}/schedules", tag = "catalogue",
    security(("bearer" = [])),
    params(("concertId" = Uuid, Path, description = "The concert")),
    responses(
        (status = 200, description = "Future schedules, ascending by start", body = [ScheduleResponse]),
        (status = 400, description = "INVALID_REQUEST (malformed id)", body = Problem, content_type = "application/problem+json"),
        (status = 401, description = "TOKEN_MISSING, TOKEN_INVALID, TOKEN_EXPIRED", body = Problem, content_type = "application/problem+json"),
        (status = 403, description = "TOKEN_NOT_ACTIVE", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "NOT_FOUND: unknown concert", body = Problem, content_type = "application/problem+json"),
        (status = 503, description = "UNAVAILABLE", body = Problem, content_type = "application/problem+json"),
    )
)]
pub async fn list_schedules(
    state: web::Data<ApiState>,
    who: Authorized,
    path: web::Path<Uuid>,
) -> Result<HttpResponse, ApiError> {
    let concert = ConcertId::from_uuid(path.into_inner());
    let schedules = blocking(move || state.ticketing().schedules(&who.0, concert)).await?;
    json(StatusCode::OK, &schedules.into_iter().map(ScheduleResponse::from).collect::<Vec<_>>())
}

/// Every seat of a schedule by number, with its status now.
#[utoipa::path(
    get, path = "/schedules/{scheduleId}/seats", tag = "catalogue",
    security(("bearer" = [])),
    params(("scheduleId" = Uuid, Path, description = "The schedule")),
    responses(
        (status = 200, description = "The seats by number", body = [SeatResponse]),
        (status = 400, description = "INVALID_REQUEST (malformed id)", body = Problem, content_type = "application/problem+json"),
        (status = 401, description = "TOKEN_MISSING, TOKEN_INVALID, TOKEN_EXPIRED", body = Problem, content_type = "application/problem+json"),
        (status = 403, description = "TOKEN_NOT_ACTIVE", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "NOT_FOUND: unknown schedule", body = Problem, content_type = "application/problem+json"),
        (status = 503, description = "UNAVAILABLE", body = Problem, content_type = "application/problem+json"),
    )
)]
pub async fn list_seats(
    state: web::Data<ApiState>,
    who: Authorized,
    path: web::Path<Uuid>,
) -> Result<HttpResponse, ApiError> {
    let schedule = ScheduleId::from_uuid(path.into_inner());
    let seats = blocking(move || state.ticketing().seats(&who.0, schedule)).await?;
    json(StatusCode::OK, &seats.into_iter().map(SeatResponse::from).collect::<Vec<_>>())
}

// ---- reservations ---------------------------------------------------------------------------

/// Holds a seat for the token's user.
#[utoipa::path(
    post, path = "/reservations", tag = "reservations",
    security(("bearer" = [])),
    request_body = ReserveRequest,
    responses(
        (status = 201, description = "The seat is held", body = ReservationResponse),
        (status = 400, description = "INVALID_REQUEST", body = Problem, content_type = "application/problem+json"),
        (status = 401, description = "TOKEN_MISSING, TOKEN_INVALID, TOKEN_EXPIRED", body = Problem, content_type = "application/problem+json"),
        (status = 403, description = "TOKEN_NOT_ACTIVE", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "NOT_FOUND: no such seat in that schedule, or it has started", body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "SEAT_UNAVAILABLE", body = Problem, content_type = "application/problem+json"),
        (status = 413, description = "PAYLOAD_TOO_LARGE", body = Problem, content_type = "application/problem+json"),
        (status = 503, description = "UNAVAILABLE", body = Problem, content_type = "application/problem+json"),
    )
)]
pub async fn reserve(
    state: web::Data<ApiState>,
    who: Authorized,
    body: Body<ReserveRequest>,
) -> Result<HttpResponse, ApiError> {
    let schedule = ScheduleId::from_uuid(body.0.schedule_id);
    let seat = SeatId::from_uuid(body.0.seat_id);
    let reservation = blocking(move || state.ticketing().reserve(&who.0, schedule, seat)).await?;
    json(StatusCode::CREATED, &ReservationResponse::from(reservation))
}

/// One of the token user's reservations.
#[utoipa::path(
    get, path = "/reservations/{reservationId}", tag = "reservations",
    security(("bearer" = [])),
    params(("reservationId" = Uuid, Path, description = "The reservation")),
    responses(
        (status = 200, description = "The reservation, status as of now", body = ReservationResponse),
        (status = 400, description = "INVALID_REQUEST (malformed id)", body = Problem, content_type = "application/problem+json"),
        (status = 401, description = "TOKEN_MISSING, TOKEN_INVALID, TOKEN_EXPIRED", body = Problem, content_type = "application/problem+json"),
        (status = 403, description = "TOKEN_NOT_ACTIVE", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "NOT_FOUND: unknown, or another user's", body = Problem, content_type = "application/problem+json"),
        (status = 503, description = "UNAVAILABLE", body = Problem, content_type = "application/problem+json"),
    )
)]
pub async fn get_reservation(
    state: web::Data<ApiState>,
    who: Authorized,
    path: web::Path<Uuid>,
) -> Result<HttpResponse, ApiError> {
    let id = ReservationId::from_uuid(path.into_inner());
    let reservation = blocking(move || state.ticketing().reservation(&who.0, id)).await?;
    json(StatusCode::OK, &ReservationResponse::from(reservation))
}

// ---- payments -------------------------------------------------------------------------------

/// Pays a held seat from the token user's balance; uses the token up.
#[utoipa::path(
    post, path = "/payments", tag = "payments",
    security(("bearer" = [])),
    request_body = PayRequest,
    responses(
        (status = 201, description = "Paid: balance debited, seat SOLD, token EXPIRED", body = PaymentResponse),
        (status = 400, description = "INVALID_REQUEST", body = Problem, content_type = "application/problem+json"),
        (status = 401, description = "TOKEN_MISSING, TOKEN_INVALID, TOKEN_EXPIRED", body = Problem, content_type = "application/problem+json"),
        (status = 402, description = "INSUFFICIENT_BALANCE: nothing changed", body = Problem, content_type = "application/problem+json"),
        (status = 403, description = "TOKEN_NOT_ACTIVE", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "NOT_FOUND: unknown, or another user's", body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "HOLD_EXPIRED, ALREADY_PAID", body = Problem, content_type = "application/problem+json"),
        (status = 413, description = "PAYLOAD_TOO_LARGE", body = Problem, content_type = "application/problem+json"),
        (status = 503, description = "UNAVAILABLE", body = Problem, content_type = "application/problem+json"),
    )
)]
pub async fn pay(
    state: web::Data<ApiState>,
    who: Authorized,
    body: Body<PayRequest>,
) -> Result<HttpResponse, ApiError> {
    let reservation = ReservationId::from_uuid(body.0.reservation_id);
    let payment = blocking(move || state.ticketing().pay(&who.0, reservation)).await?;
    json(StatusCode::CREATED, &PaymentResponse::from(payment))
}

// ---- balance --------------------------------------------------------------------------------

/// A user's balance (0 if never charged). No queue token needed.
#[utoipa::path(
    get, path = "/users/{userId}/balance", tag = "balance",
    params(("userId" = Uuid, Path, description = "The user")),
    responses(
        (status = 200, description = "The balance", body = BalanceResponse),
        (status = 400, description = "INVALID_REQUEST (malformed id)", body = Problem, content_type = "application/problem+json"),
        (status = 503, description = "UNAVAILABLE", body = Problem, content_type = "application/problem+json"),
    )
)]
pub async fn get_balance(state: web::Data<ApiState>, path: web::Path<Uuid>) -> Result<HttpResponse, ApiError> {
    let user = UserId::from_uuid(path.into_inner());
    let balance = blocking(move || state.ticketing().balance(user)).await?;
    json(StatusCode::OK, &BalanceResponse::new(user, balance))
}

/// Adds won to a user's balance. No queue token needed.
#[utoipa::path(
    post, path = "/users/{userId}/balance/charge", tag = "balance",
    params(("userId" = Uuid, Path, description = "The user")),
    request_body = ChargeRequest,
    responses(
        (status = 200, description = "The new balance", body = BalanceResponse),
        (status = 400, description = "INVALID_REQUEST, INVALID_AMOUNT", body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "BALANCE_LIMIT: nothing changed", body = Problem, content_type = "application/problem+json"),
        (status = 413, description = "PAYLOAD_TOO_LARGE", body = Problem, content_type = "application/problem+json"),
        (status = 503, description = "UNAVAILABLE", body = Problem, content_type = "application/problem+json"),
    )
)]
pub async fn charge(
    state: web::Data<ApiState>,
    path: web::Path<Uuid>,
    body: Body<ChargeRequest>,
) -> Result<HttpResponse, ApiError> {
    let user = UserId::from_uuid(path.into_inner());
    // Only integers that fit an i64 reach the domain, which checks the range; any other JSON
    // value (string, float, null, huge number) is a wrong amount, not a malformed request.
    let amount = body.0.amount.as_i64().ok_or_else(ApiError::invalid_amount)?;
    let balance = blocking(move || state.ticketing().charge(user, amount)).await?;
    json(StatusCode::OK, &BalanceResponse::new(user, balance))
}

/// A user's balance changes, oldest first. No queue token needed.
#[utoipa::path(
    get, path = "/users/{userId}/balance/history", tag = "balance",
    params(("userId" = Uuid, Path, description = "The user")),
    responses(
        (status = 200, description = "The ledger, oldest first", body = [LedgerEntryResponse]),
        (status = 400, description = "INVALID_REQUEST (malformed id)", body = Problem, content_type = "application/problem+json"),
        (status = 503, description = "UNAVAILABLE", body = Problem, content_type = "application/problem+json"),
    )
)]
pub async fn balance_history(state: web::Data<ApiState>, path: web::Path<Uuid>) -> Result<HttpResponse, ApiError> {
    let user = UserId::from_uuid(path.into_inner());
    let ledger = blocking(move || state.ticketing().ledger(user)).await?;
    json(StatusCode::OK, &ledger.into_iter().map(LedgerEntryResponse::from).collect::<Vec<_>>())
}

// ---- operations -----------------------------------------------------------------------------

/// The process is up.
#[utoipa::path(
    get, path = "/health/live", tag = "operations",
    responses((status = 200, description = "Alive", body = HealthResponse))
)]
pub async fn live() -> Result<HttpResponse, ApiError> {
    json(StatusCode::OK, &HealthResponse { status: "ok".to_owned() })
}

/// The store answers.
#[utoipa::path(
    get, path = "/health/ready", tag = "operations",
    responses(
        (status = 200, description = "Ready", body = HealthResponse),
        (status = 503, description = "UNAVAILABLE: the store is unreachable", body = Problem, content_type = "application/problem+json"),
    )
)]
pub async fn ready(state: web::Data<ApiState>) -> Result<HttpResponse, ApiError> {
    let probe = blocking(move || state.readiness().check());
    match actix_web::rt::time::timeout(READY_TIMEOUT, probe).await {
        Ok(result) => result?,
        Err(_elapsed) => return Err(ApiError::unavailable(&"readiness probe timed out")),
    }
    json(StatusCode::OK, &HealthResponse { status: "ready".to_owned() })
}

/// This document.
#[utoipa::path(
    get, path = "/openapi.json", tag = "operations",
    responses((status = 200, description = "The OpenAPI 3 document", content_type = "application/json"))
)]
pub async fn openapi() -> HttpResponse {
    static DOC: OnceLock<String> = OnceLock::new();
    let doc = DOC.get_or_init(|| crate::openapi::ApiDoc::openapi().to_json().unwrap_or_else(|_| "{}".to_owned()));
    HttpResponse::Ok().content_type("application/json").body(doc.as_str())
}

// ---- fallbacks ------------------------------------------------------------------------------

/// Any path no route matches.
pub async fn not_found() -> Result<HttpResponse, ApiError> {
    Err(ApiError::not_found("no such route"))
}

/// A known path with a method it does not serve; `Allow` lists the ones it does.
pub async fn method_not_allowed(allow: &'static str) -> HttpResponse {
    let mut res = ApiError::method_not_allowed().error_response();
    res.headers_mut().insert(header::ALLOW, header::HeaderValue::from_static(allow));
    res
}
