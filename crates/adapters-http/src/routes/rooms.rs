//! Rooms: the on-sales buyers can join (`GET /rooms`, no token) and the operator's rooms
//! (`/admin/rooms`). A room id in a path that is not a slug names no room: 404.

use actix_web::http::StatusCode;
use actix_web::{web, HttpResponse};
use domain::error::{CreateRoomError, GetRoomError, StoreError, UpdateRoomError};
use domain::room::{RoomChange, RoomDraft, RoomId};

use super::json;
use crate::dto::{
    CreateRoomRequest, RoomAdminResponse, RoomHistoryResponse, RoomResponse, RoomSampleResponse, UpdateRoomRequest,
};
use crate::error::ApiError;
use crate::extract::{Body, Operator};
use crate::metrics;
use crate::responses::{AdminRows, BodyRows, Fails, SlotRows};
use crate::state::ApiState;

fn room_in_path(path: &str) -> Result<RoomId, ApiError> {
    RoomId::parse(path).map_err(|_| GetRoomError::NotFound.into())
}

/// Every on-sale (at most half a second old): `main` first, then by opening (rooms without one last), then by id, each with
/// its state, its opening, how many wait and the wait of someone joining now.
#[utoipa::path(
    get, path = "/rooms", tag = "rooms",
    responses(
        (status = 200, description = "The rooms", body = [RoomResponse]),
        Fails<(SlotRows, StoreError)>,
    )
)]
pub async fn list_rooms(state: web::Data<ApiState>) -> Result<HttpResponse, ApiError> {
    let rooms = state.rooms_listing().await?;
    json(StatusCode::OK, &rooms.iter().map(RoomResponse::from).collect::<Vec<_>>())
}

/// One on-sale.
#[utoipa::path(
    get, path = "/rooms/{roomId}", tag = "rooms",
    params(("roomId" = String, Path, description = "The room")),
    responses(
        (status = 200, description = "The room", body = RoomResponse),
        Fails<(SlotRows, GetRoomError)>,
    )
)]
pub async fn get_room(state: web::Data<ApiState>, path: web::Path<String>) -> Result<HttpResponse, ApiError> {
    let room = room_in_path(&path)?;
    let rooms = state.rooms_listing().await?;
    let view = rooms.iter().find(|v| v.room.id == room).ok_or_else(|| ApiError::from(GetRoomError::NotFound))?;
    json(StatusCode::OK, &RoomResponse::from(view))
}

/// Every room with its settings and figures, `main` first.
#[utoipa::path(
    get, path = "/admin/rooms", tag = "admin",
    security(("admin" = [])),
    responses(
        (status = 200, description = "The rooms", body = [RoomAdminResponse]),
        Fails<(AdminRows, SlotRows, StoreError)>,
    )
)]
pub async fn list_rooms_admin(state: web::Data<ApiState>, _op: Operator) -> Result<HttpResponse, ApiError> {
    let rooms = state.store(|t| t.rooms_overview()).await?;
    json(StatusCode::OK, &rooms.iter().map(RoomAdminResponse::from).collect::<Vec<_>>())
}

/// One room with its settings and figures (`main`: the figures of `GET /admin/queue`).
#[utoipa::path(
    get, path = "/admin/rooms/{roomId}", tag = "admin",
    security(("admin" = [])),
    params(("roomId" = String, Path, description = "The room")),
    responses(
        (status = 200, description = "The room", body = RoomAdminResponse),
        Fails<(AdminRows, SlotRows, GetRoomError)>,
    )
)]
pub async fn get_room_admin(
    state: web::Data<ApiState>,
    _op: Operator,
    path: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    let room = room_in_path(&path)?;
    let view = state.store(move |t| t.room_view(&room)).await?;
    json(StatusCode::OK, &RoomAdminResponse::from(&view))
}

/// Creates a room: its own line, settings and opening, gating the concerts named.
#[utoipa::path(
    post, path = "/admin/rooms", tag = "admin",
    security(("admin" = [])),
    request_body = CreateRoomRequest,
    responses(
        (status = 201, description = "The room", body = RoomAdminResponse),
        Fails<(AdminRows, BodyRows, SlotRows, CreateRoomError)>,
    )
)]
pub async fn create_room(
    state: web::Data<ApiState>,
    op: Operator,
    body: Body<CreateRoomRequest>,
) -> Result<HttpResponse, ApiError> {
    let draft = RoomDraft::from(&body.0);
    let view = state.store(move |t| t.create_room(&op.0, &draft)).await?;
    state.forget_rooms_listing();
    metrics::describe_room(view.room.id.as_str());
    json(StatusCode::CREATED, &RoomAdminResponse::from(&view))
}

/// Changes a room for every instance (from each one's next scheduler check; kept across
/// restarts). `main` takes only `paused` and the admission settings.
#[utoipa::path(
    patch, path = "/admin/rooms/{roomId}", tag = "admin",
    security(("admin" = [])),
    params(("roomId" = String, Path, description = "The room")),
    request_body = UpdateRoomRequest,
    responses(
        (status = 200, description = "The room after the change", body = RoomAdminResponse),
        Fails<(AdminRows, BodyRows, SlotRows, UpdateRoomError)>,
    )
)]
pub async fn update_room(
    state: web::Data<ApiState>,
    op: Operator,
    path: web::Path<String>,
    body: Body<UpdateRoomRequest>,
) -> Result<HttpResponse, ApiError> {
    let room = RoomId::parse(&path).map_err(|_| ApiError::from(UpdateRoomError::NotFound))?;
    let change = RoomChange::from(&body.0);
    let view = state.store(move |t| t.update_room(&op.0, &room, &change)).await?;
    state.forget_rooms_listing();
    json(StatusCode::OK, &RoomAdminResponse::from(&view))
}

/// A room's figures over the last 30 minutes (one sample every 10 s), as this instance sampled
/// them into its memory: the operator's console charts them. Another instance answers its own
/// samples; `instance` names which one answered.
#[utoipa::path(
    get, path = "/admin/rooms/{roomId}/history", tag = "admin",
    security(("admin" = [])),
    params(("roomId" = String, Path, description = "The room")),
    responses(
        (status = 200, description = "The room's samples, oldest first", body = RoomHistoryResponse),
        Fails<(AdminRows, SlotRows, GetRoomError)>,
    )
)]
pub async fn room_history(
    state: web::Data<ApiState>,
    _op: Operator,
    path: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    let room = room_in_path(&path)?;
    let id = room.to_string();
    // Only a room the store knows has a history (a forgotten one answers 404 like its view).
    state.store(move |t| t.room_view(&room)).await?;
    let samples = state.history().of(&id);
    json(
        StatusCode::OK,
        &RoomHistoryResponse {
            room_id: id,
            instance: state.instance().to_owned(),
            interval_secs: crate::history::SAMPLE_EVERY.as_secs(),
            capacity: crate::history::SAMPLES,
            samples: samples.iter().map(RoomSampleResponse::from).collect(),
        },
    )
}
