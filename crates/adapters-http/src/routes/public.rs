//! The buyer's API: queue, catalogue, reservations, payments, balance.

use actix_web::http::StatusCode;
use actix_web::{web, HttpResponse};
use domain::call::CommitWatch;
use domain::error::{
    AuthorizeError, BalanceError, ChargeError, GetReservationError, HistoryError, IssueTokenError, ListConcertsError,
    ListSchedulesError, ListSeatsError, PayError, ReadTokenError, ReserveError,
};
use domain::idempotency::{Effect, IdempotencyRequest, Outcome};
use domain::ids::{ConcertId, LedgerEntryId, ReservationId, ScheduleId, SeatId, UserId};
use domain::room::RoomId;
use serde::Deserialize;
use utoipa::IntoParams;

use super::{answer, json, page_limit, render_effect};
use crate::dto::{
    BalanceResponse, ChargeRequest, ConcertResponse, HistoryResponse, IssueTokenRequest, PayRequest, PaymentResponse,
    ReservationResponse, ReserveRequest, ScheduleResponse, SeatResponse, TokenResponse,
};
use crate::error::ApiError;
use crate::extract::{path_id, Bearer, Body, IdemKey, Signed};
use crate::metrics;
use crate::responses::{BadInput, BearerRows, BodyRows, Fails, IdentityRows, KeyRows, RateRows, SlotRows};
use crate::state::ApiState;
use crate::wire::canonical_uuid;

// ---- queue ----------------------------------------------------------------------------------

/// Takes a place in line (in `main`, or in the room `roomId`: one live token per user per
/// room), or returns the user's live token there. With identity on, only for the
/// signed-in user (`userId` may then be left out).
#[utoipa::path(
    post, path = "/queue/tokens", tag = "queue",
    security((), ("identity" = [])),
    request_body = IssueTokenRequest,
    responses(
        (status = 201, description = "A new WAITING token", body = TokenResponse),
        (status = 200, description = "The user's existing WAITING or ACTIVE token", body = TokenResponse),
        Fails<(IdentityRows, BodyRows, RateRows, SlotRows, IssueTokenError)>,
    )
)]
pub async fn issue_token(
    state: web::Data<ApiState>,
    signed: Signed,
    body: Body<IssueTokenRequest>,
) -> Result<HttpResponse, ApiError> {
    let user = signed.acting_for(body.0.user_id.map(|id| UserId::from_uuid(id.0)))?;
    let room = match body.0.room_id.as_deref() {
        None => RoomId::main(),
        Some(id) => RoomId::parse(id).map_err(|e| ApiError::invalid_request(format!("roomId: {e}")))?,
    };
    // Without the hop when the queue's store has a non-blocking client and the room's settings
    // are in memory (see `crate::state`); on the blocking pool otherwise.
    let issued = match state.ticketing().plan_issue_in_memory(user, &room) {
        Some(step) => {
            let watch = CommitWatch::new();
            let call = state.ticketing().issue_planned(step.map_err(ApiError::from)?, watch.clone());
            state.nonblocking(call, &watch).await?
        }
        None => state.issue(move |t| t.issue_token_in(user, &room)).await?,
    };
    let status = if issued.created {
        metrics::record_issued(issued.view.token.value.room().as_str());
        StatusCode::CREATED
    } else {
        StatusCode::OK
    };
    json(status, &TokenResponse::from(issued.view))
}

/// The token's status, position, estimated wait and when to poll again. WAITING tokens are
/// usually answered from memory, without touching the store.
#[utoipa::path(
    get, path = "/queue/token", tag = "queue",
    security(("bearer" = [])),
    responses(
        (status = 200, description = "The token (also when EXPIRED)", body = TokenResponse),
        Fails<(BearerRows, SlotRows, ReadTokenError)>,
    )
)]
pub async fn read_token(state: web::Data<ApiState>, bearer: Bearer) -> Result<HttpResponse, ApiError> {
    // On the HTTP worker: a cached WAITING token (and a malformed one) needs no hop.
    let view = match state.ticketing().read_token_in_memory(bearer.as_str()) {
        Some(view) => view?,
        None => match state.ticketing().plan_read_in_memory(bearer.as_str()) {
            // Not cached, but readable without the hop (see `crate::state`).
            Some(step) => {
                let call = state.ticketing().read_planned(step.map_err(ApiError::from)?);
                state.nonblocking(call, &CommitWatch::new()).await?
            }
            None => state.store(move |t| t.read_token(bearer.as_str())).await?,
        },
    };
    json(StatusCode::OK, &TokenResponse::from(view))
}

// ---- catalogue ------------------------------------------------------------------------------

/// Every concert.
#[utoipa::path(
    get, path = "/concerts", tag = "catalogue",
    security(("bearer" = [])),
    responses(
        (status = 200, description = "The concerts", body = [ConcertResponse]),
        Fails<(BearerRows, SlotRows, AuthorizeError, ListConcertsError)>,
    )
)]
pub async fn list_concerts(state: web::Data<ApiState>, bearer: Bearer) -> Result<HttpResponse, ApiError> {
    let concerts = state.as_active(bearer, |t, who| t.concerts(who)).await?;
    json(StatusCode::OK, &concerts.into_iter().map(ConcertResponse::from).collect::<Vec<_>>())
}

/// A concert's schedules still open for booking, soonest first.
#[utoipa::path(
    get, path = "/concerts/{concertId}/schedules", tag = "catalogue",
    security(("bearer" = [])),
    params(("concertId" = Uuid, Path, description = "The concert")),
    responses(
        (status = 200, description = "Future schedules, ascending by start", body = [ScheduleResponse]),
        Fails<(BearerRows, BadInput, SlotRows, AuthorizeError, ListSchedulesError)>,
    )
)]
pub async fn list_schedules(
    state: web::Data<ApiState>,
    bearer: Bearer,
    path: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    let concert: ConcertId = path_id(&path, "concertId")?;
    let schedules = state.as_active(bearer, move |t, who| t.schedules(who, concert)).await?;
    json(StatusCode::OK, &schedules.into_iter().map(ScheduleResponse::from).collect::<Vec<_>>())
}

/// Every seat of a schedule by number, with its status now.
#[utoipa::path(
    get, path = "/schedules/{scheduleId}/seats", tag = "catalogue",
    security(("bearer" = [])),
    params(("scheduleId" = Uuid, Path, description = "The schedule")),
    responses(
        (status = 200, description = "The seats by number", body = [SeatResponse]),
        Fails<(BearerRows, BadInput, SlotRows, AuthorizeError, ListSeatsError)>,
    )
)]
pub async fn list_seats(
    state: web::Data<ApiState>,
    bearer: Bearer,
    path: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    let schedule: ScheduleId = path_id(&path, "scheduleId")?;
    let seats = state.as_active(bearer, move |t, who| t.seats(who, schedule)).await?;
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
        Fails<(BearerRows, BodyRows, SlotRows, AuthorizeError, ReserveError)>,
    )
)]
pub async fn reserve(
    state: web::Data<ApiState>,
    bearer: Bearer,
    body: Body<ReserveRequest>,
) -> Result<HttpResponse, ApiError> {
    let schedule = ScheduleId::from_uuid(body.0.schedule_id.0);
    let seat = SeatId::from_uuid(body.0.seat_id.0);
    let reservation = state.as_active(bearer, move |t, who| t.reserve(who, schedule, seat)).await?;
    metrics::record_held();
    json(StatusCode::CREATED, &ReservationResponse::from(reservation))
}

/// One of the token user's reservations.
#[utoipa::path(
    get, path = "/reservations/{reservationId}", tag = "reservations",
    security(("bearer" = [])),
    params(("reservationId" = Uuid, Path, description = "The reservation")),
    responses(
        (status = 200, description = "The reservation, status as of now", body = ReservationResponse),
        Fails<(BearerRows, BadInput, SlotRows, AuthorizeError, GetReservationError)>,
    )
)]
pub async fn get_reservation(
    state: web::Data<ApiState>,
    bearer: Bearer,
    path: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    let id: ReservationId = path_id(&path, "reservationId")?;
    let reservation = state.as_active(bearer, move |t, who| t.reservation(who, id)).await?;
    json(StatusCode::OK, &ReservationResponse::from(reservation))
}

// ---- payments -------------------------------------------------------------------------------

/// Pays a held seat from the token user's balance and uses the token up. With an
/// `Idempotency-Key`, a retry gets the first answer again (marked `Idempotent-Replayed`), even
/// though the payment used the token up.
#[utoipa::path(
    post, path = "/payments", tag = "payments",
    security(("bearer" = [])),
    params(("Idempotency-Key" = Option<String>, Header, pattern = "^[!-~]{1,255}$", description = "1 to 255 visible ASCII characters; a retry with the same key and body gets the first answer again")),
    request_body = PayRequest,
    responses(
        (status = 201, description = "Paid: balance debited, seat SOLD, token EXPIRED", body = PaymentResponse,
            headers(("Idempotent-Replayed" = String, description = "`true` when this is the recorded answer of an earlier request with the same key"))),
        Fails<(BearerRows, KeyRows, BodyRows, SlotRows, PayError)>,
    )
)]
pub async fn pay(
    state: web::Data<ApiState>,
    bearer: Bearer,
    key: IdemKey,
    body: Body<PayRequest>,
) -> Result<HttpResponse, ApiError> {
    let reservation = ReservationId::from_uuid(body.0.reservation_id.0);
    let outcome = state
        .store(move |t| {
            let idempotency = key.0.map(|key| IdempotencyRequest { key, render: &render_effect });
            t.pay(bearer.as_str(), reservation, idempotency)
        })
        .await?;
    if matches!(outcome, Outcome::Fresh { .. }) {
        metrics::record_paid();
    }
    Ok(answer(outcome, Effect::Paid))
}

// ---- balance --------------------------------------------------------------------------------

/// A user's balance (0 if never charged). No queue token needed; with identity on, only the
/// signed-in user's.
#[utoipa::path(
    get, path = "/users/{userId}/balance", tag = "balance",
    security((), ("identity" = [])),
    params(("userId" = Uuid, Path, description = "The user")),
    responses(
        (status = 200, description = "The balance", body = BalanceResponse),
        Fails<(IdentityRows, BadInput, SlotRows, BalanceError)>,
    )
)]
pub async fn get_balance(
    state: web::Data<ApiState>,
    signed: Signed,
    path: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    let user = signed.acting_for(Some(path_id(&path, "userId")?))?;
    let balance = state.store(move |t| t.balance(user)).await?;
    json(StatusCode::OK, &BalanceResponse::new(user, balance))
}

/// Adds won to a user's balance. No queue token needed; with identity on, only the signed-in
/// user's. With an `Idempotency-Key`, a retry gets the first answer again (marked
/// `Idempotent-Replayed`) and changes nothing.
#[utoipa::path(
    post, path = "/users/{userId}/balance/charge", tag = "balance",
    security((), ("identity" = [])),
    params(
        ("userId" = Uuid, Path, description = "The user"),
        ("Idempotency-Key" = Option<String>, Header, pattern = "^[!-~]{1,255}$", description = "1 to 255 visible ASCII characters; a retry with the same key and body gets the first answer again"),
    ),
    request_body = ChargeRequest,
    responses(
        (status = 200, description = "The new balance", body = BalanceResponse,
            headers(("Idempotent-Replayed" = String, description = "`true` when this is the recorded answer of an earlier request with the same key"))),
        Fails<(IdentityRows, BadInput, KeyRows, BodyRows, SlotRows, ChargeError)>,
    )
)]
pub async fn charge(
    state: web::Data<ApiState>,
    signed: Signed,
    path: web::Path<String>,
    key: IdemKey,
    body: Body<ChargeRequest>,
) -> Result<HttpResponse, ApiError> {
    let user = signed.acting_for(Some(path_id(&path, "userId")?))?;
    // Only integers that fit an i64 reach the domain, which checks the range; any other JSON
    // value (string, float, null, huge number) is a wrong amount, not a malformed request.
    let amount = body.0.amount.as_i64().ok_or_else(ApiError::invalid_amount)?;
    let outcome = state
        .store(move |t| {
            let idempotency = key.0.map(|key| IdempotencyRequest { key, render: &render_effect });
            t.charge(user, amount, idempotency)
        })
        .await?;
    Ok(answer(outcome, |balance| Effect::Charged { user, balance }))
}

/// `?limit=&before=` of the balance history, as sent (validated by the handler, so that a
/// malformed value is a contract 400 and not a serde message).
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct HistoryQuery {
    /// At most this many entries, 1 to 100 (default 50).
    #[param(value_type = Option<u32>, minimum = 1, maximum = 100)]
    pub limit: Option<String>,
    /// Only entries older than this entry of the user's (a `nextBefore` or an entry `id`).
    #[param(value_type = Option<Uuid>)]
    pub before: Option<String>,
}

/// A user's balance changes, newest first, a page at a time. No queue token needed; with
/// identity on, only the signed-in user's.
#[utoipa::path(
    get, path = "/users/{userId}/balance/history", tag = "balance",
    security((), ("identity" = [])),
    params(("userId" = Uuid, Path, description = "The user"), HistoryQuery),
    responses(
        (status = 200, description = "One page of the ledger, newest first", body = HistoryResponse),
        Fails<(IdentityRows, BadInput, SlotRows, HistoryError)>,
    )
)]
pub async fn balance_history(
    state: web::Data<ApiState>,
    signed: Signed,
    path: web::Path<String>,
    query: web::Query<HistoryQuery>,
) -> Result<HttpResponse, ApiError> {
    let user = signed.acting_for(Some(path_id(&path, "userId")?))?;
    let limit = page_limit(query.limit.as_deref()).map_err(|()| HistoryError::InvalidLimit)?;
    let before = match query.before.as_deref() {
        None => None,
        Some(s) => Some(LedgerEntryId::from_uuid(
            canonical_uuid(s)
                .ok_or_else(|| ApiError::invalid_request("before must be a lower-case hyphenated UUID"))?,
        )),
    };
    let page = state.store(move |t| t.balance_history(user, before, limit)).await?;
    json(StatusCode::OK, &HistoryResponse::from(page))
}
