//! The operator API under `/admin`, mounted only when an operator token is configured. Every
//! handler takes an [`Operator`], whose short key id the use cases log as the actor of each
//! change (never the key itself). Bodies are validated before any store call: a 400 stores
//! nothing.

use actix_web::http::StatusCode;
use actix_web::{web, HttpResponse};
use domain::catalogue::{ConcertDraft, ScheduleDraft};
use domain::error::{AddScheduleError, AuditLogError, CreateConcertError, SalesError, StoreError, UpdateQueueError};
use domain::ids::ConcertId;
use domain::queue::{SettingsChange, SettingsPatch};
use serde::Deserialize;
use utoipa::IntoParams;

use super::{json, page_limit};
use crate::dto::{
    AuditResponse, ConcertRequest, ConcertResponse, NewConcertResponse, NewScheduleResponse, QueuePatchRequest,
    QueueStateResponse, SalesResponse, ScheduleRequest,
};
use crate::error::ApiError;
use crate::extract::{path_id, Body, Operator};
use crate::responses::{AdminRows, BadInput, BodyRows, Fails, SlotRows};
use crate::state::ApiState;

/// `?limit=&before=` of the operator log, as sent (validated by the handler, so that a
/// malformed value is a contract 400 and not a serde message).
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct AuditQuery {
    /// At most this many lines, 1 to 100 (default 50).
    #[param(value_type = Option<u32>, minimum = 1, maximum = 100)]
    pub limit: Option<String>,
    /// Only lines older than this one (a `nextBefore` or a line's `seq`).
    #[param(value_type = Option<i64>)]
    pub before: Option<String>,
}

/// The operator log, newest first, a page at a time: every change made through the operator
/// API, with who made it (the operator token's fingerprint), when, and the state before and
/// after. Kept in the store with the change itself, so every instance shows the same log.
#[utoipa::path(
    get, path = "/admin/audit", tag = "admin",
    security(("admin" = [])),
    params(AuditQuery),
    responses(
        (status = 200, description = "One page of the operator log, newest first", body = AuditResponse),
        Fails<(AdminRows, BadInput, SlotRows, AuditLogError)>,
    )
)]
pub async fn audit_log(
    state: web::Data<ApiState>,
    _op: Operator,
    query: web::Query<AuditQuery>,
) -> Result<HttpResponse, ApiError> {
    let limit = page_limit(query.limit.as_deref()).map_err(|()| AuditLogError::InvalidLimit)?;
    let before = match query.before.as_deref() {
        None => None,
        Some(s) if !s.is_empty() && s.len() <= 18 && s.bytes().all(|b| b.is_ascii_digit()) => s.parse::<i64>().ok(),
        Some(_) => return Err(ApiError::invalid_request("before must be a line's seq (a positive integer)")),
    };
    let page = state.store(move |t| t.audit_log(before, limit)).await?;
    json(StatusCode::OK, &AuditResponse::from(page))
}

/// Every concert, whichever room sells it (the console picks a room's concerts and a
/// concert's sales from it).
#[utoipa::path(
    get, path = "/admin/concerts", tag = "admin",
    security(("admin" = [])),
    responses(
        (status = 200, description = "Every concert", body = [ConcertResponse]),
        Fails<(AdminRows, SlotRows, StoreError)>,
    )
)]
pub async fn list_concerts(state: web::Data<ApiState>, _op: Operator) -> Result<HttpResponse, ApiError> {
    let concerts = state.store(|t| t.all_concerts()).await?;
    json(StatusCode::OK, &concerts.into_iter().map(ConcertResponse::from).collect::<Vec<_>>())
}

/// The waiting room now: counts, cursor, next admission, settings in force.
#[utoipa::path(
    get, path = "/admin/queue", tag = "admin",
    security(("admin" = [])),
    responses(
        (status = 200, description = "The waiting room", body = QueueStateResponse),
        Fails<(AdminRows, SlotRows, StoreError)>,
    )
)]
pub async fn queue_state(state: web::Data<ApiState>, _op: Operator) -> Result<HttpResponse, ApiError> {
    let queue = state.store(|t| t.queue_state()).await?;
    json(StatusCode::OK, &QueueStateResponse::from(queue))
}

/// Changes the waiting room's live settings for every instance (applied at each one's next
/// scheduler check; kept across restarts).
#[utoipa::path(
    patch, path = "/admin/queue", tag = "admin",
    security(("admin" = [])),
    request_body = QueuePatchRequest,
    responses(
        (status = 200, description = "The waiting room after the change", body = QueueStateResponse),
        Fails<(AdminRows, BodyRows, SlotRows, UpdateQueueError)>,
    )
)]
pub async fn update_queue(
    state: web::Data<ApiState>,
    op: Operator,
    body: Body<QueuePatchRequest>,
) -> Result<HttpResponse, ApiError> {
    let b = body.0;
    let patch = SettingsPatch::new(SettingsChange {
        paused: b.paused,
        admit_batch: b.admit_batch,
        admit_interval_secs: b.admit_interval_secs,
        active_ttl_secs: b.active_ttl_secs,
        max_active: b.max_active,
    })
    .map_err(UpdateQueueError::from)?;
    let queue = state.store(move |t| t.update_queue(&op.0, &patch)).await?;
    json(StatusCode::OK, &QueueStateResponse::from(queue))
}

/// Creates a concert with its schedules and seat maps, all or nothing.
#[utoipa::path(
    post, path = "/admin/concerts", tag = "admin",
    security(("admin" = [])),
    request_body = ConcertRequest,
    responses(
        (status = 201, description = "The concert and its schedules", body = NewConcertResponse),
        Fails<(AdminRows, BodyRows, SlotRows, CreateConcertError)>,
    )
)]
pub async fn create_concert(
    state: web::Data<ApiState>,
    op: Operator,
    body: Body<ConcertRequest>,
) -> Result<HttpResponse, ApiError> {
    let draft = ConcertDraft::from(&body.0);
    let concert = state.store(move |t| t.create_concert(&op.0, &draft)).await?;
    json(StatusCode::CREATED, &NewConcertResponse::from(&concert))
}

/// Adds a schedule with its seat map to a concert, all or nothing.
#[utoipa::path(
    post, path = "/admin/concerts/{concertId}/schedules", tag = "admin",
    security(("admin" = [])),
    params(("concertId" = Uuid, Path, description = "The concert")),
    request_body = ScheduleRequest,
    responses(
        (status = 201, description = "The schedule", body = NewScheduleResponse),
        Fails<(AdminRows, BadInput, BodyRows, SlotRows, AddScheduleError)>,
    )
)]
pub async fn add_schedule(
    state: web::Data<ApiState>,
    op: Operator,
    path: web::Path<String>,
    body: Body<ScheduleRequest>,
) -> Result<HttpResponse, ApiError> {
    let concert: ConcertId = path_id(&path, "concertId")?;
    let draft = ScheduleDraft::from(&body.0);
    let schedule = state.store(move |t| t.add_schedule(&op.0, concert, &draft)).await?;
    json(StatusCode::CREATED, &NewScheduleResponse::from(&schedule))
}

/// A concert's sales per schedule as of now.
#[utoipa::path(
    get, path = "/admin/concerts/{concertId}/sales", tag = "admin",
    security(("admin" = [])),
    params(("concertId" = Uuid, Path, description = "The concert")),
    responses(
        (status = 200, description = "Sales per schedule, ascending by start", body = [SalesResponse]),
        Fails<(AdminRows, BadInput, SlotRows, SalesError)>,
    )
)]
pub async fn sales(
    state: web::Data<ApiState>,
    _op: Operator,
    path: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    let concert: ConcertId = path_id(&path, "concertId")?;
    let rows = state.store(move |t| t.sales(concert)).await?;
    json(StatusCode::OK, &rows.into_iter().map(SalesResponse::from).collect::<Vec<_>>())
}
