//! The OpenAPI 3 document, generated from the handlers' `#[utoipa::path]` attributes, the
//! DTOs' `ToSchema` derives and the error table ([`crate::responses::Fails`]), so it cannot drift
//! from the code. `GET /openapi.json` serves it and `/docs` browses it.

use std::sync::OnceLock;

use serde_json::{json, Value};
use utoipa::openapi::schema::Schema;
use utoipa::openapi::security::{Http, HttpAuthScheme, SecurityScheme};
use utoipa::openapi::RefOr;
use utoipa::{Modify, OpenApi};

use crate::dto::{
    AuditEntryResponse, AuditResponse, BalanceResponse, ChargeRequest, ConcertRequest, ConcertResponse,
    CreateRoomRequest, DrawResponse, HealthResponse, HistoryResponse, IssueTokenRequest, LedgerEntryResponse,
    NewConcertResponse, NewScheduleResponse, PayRequest, PaymentResponse, QueuePatchRequest, QueueStateResponse,
    ReservationResponse, ReserveRequest, RoomAdminResponse, RoomHistoryResponse, RoomResponse, RoomSampleResponse,
    SalesResponse, ScheduleRequest, ScheduleResponse, SeatRequest, SeatResponse, TokenResponse, UpdateRoomRequest,
};
use crate::error::{ErrorCode, Problem};
use crate::routes::{admin, ops, public, rooms};

/// The service's OpenAPI document (`GET /openapi.json`).
#[derive(Debug, OpenApi)]
#[openapi(
    info(
        title = "Concert reservation service",
        description = "A waiting room in front of a concert ticket shop: take a place in line, get admitted, \
                       browse, hold a seat, pay from a prepaid balance. Errors are RFC 9457 problem details \
                       (`application/problem+json`) with a machine-readable `code`; each `type` links to its \
                       documentation. Charges and payments accept an `Idempotency-Key` for safe retries."
    ),
    servers((url = "/", description = "This instance")),
    paths(
        public::issue_token,
        public::read_token,
        rooms::list_rooms,
        rooms::get_room,
        public::list_concerts,
        public::list_schedules,
        public::list_seats,
        public::reserve,
        public::get_reservation,
        public::pay,
        public::get_balance,
        public::charge,
        public::balance_history,
        admin::queue_state,
        admin::update_queue,
        admin::list_concerts,
        admin::create_concert,
        admin::add_schedule,
        admin::sales,
        admin::audit_log,
        rooms::list_rooms_admin,
        rooms::get_room_admin,
        rooms::create_room,
        rooms::update_room,
        rooms::room_history,
        ops::live,
        ops::ready,
        ops::metrics,
        ops::openapi,
        ops::docs_index,
        ops::docs_asset,
        ops::problem_type,
        ops::page,
        ops::page_asset,
        ops::console,
        ops::console_asset,
    ),
    components(schemas(
        IssueTokenRequest, ReserveRequest, PayRequest, ChargeRequest, TokenResponse, ConcertResponse,
        ScheduleResponse, SeatResponse, ReservationResponse, PaymentResponse, BalanceResponse, LedgerEntryResponse,
        HistoryResponse, HealthResponse, QueuePatchRequest, QueueStateResponse, ConcertRequest, ScheduleRequest,
        SeatRequest, NewConcertResponse, NewScheduleResponse, SalesResponse, AuditEntryResponse, AuditResponse, Problem,
        ErrorCode, RoomResponse, RoomAdminResponse, DrawResponse, CreateRoomRequest, UpdateRoomRequest,
        RoomHistoryResponse, RoomSampleResponse,
    )),
    modifiers(&SecuritySchemes, &Bounds),
    tags(
        (name = "queue", description = "The waiting room"),
        (name = "rooms", description = "The on-sales: one waiting line per room (no token)"),
        (name = "catalogue", description = "Concerts, schedules, seats (ACTIVE token required)"),
        (name = "reservations", description = "Seat holds (ACTIVE token required)"),
        (name = "payments", description = "Payments (ACTIVE token required)"),
        (name = "balance", description = "Balances (no token)"),
        (name = "admin", description = "The operator API (operator token; only when ADMIN_TOKEN is set)"),
        (name = "operations", description = "Health, metrics, this document, problem types"),
        (name = "page", description = "The buyer's page"),
    )
)]
pub struct ApiDoc;

/// Declares the `bearer` (queue token), `admin` (operator token) and `identity` (signed identity)
/// schemes the paths name.
#[derive(Debug)]
struct SecuritySchemes;

impl Modify for SecuritySchemes {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        let mut queue = Http::new(HttpAuthScheme::Bearer);
        queue.description = Some("The queue token from POST /queue/tokens".to_owned());
        components.add_security_scheme("bearer", SecurityScheme::Http(queue));
        let mut admin = Http::new(HttpAuthScheme::Bearer);
        admin.description = Some("The operator token (ADMIN_TOKEN)".to_owned());
        components.add_security_scheme("admin", SecurityScheme::Http(admin));
        let mut identity = Http::new(HttpAuthScheme::Bearer);
        identity.bearer_format = Some("JWT".to_owned());
        identity.description = Some(
            "A signed identity: an ID or access token (JWT) of the identity provider named by AUTH_ISSUER. \
             Needed by POST /queue/tokens and the balance routes only on an instance with identity on; \
             without it those routes trust the userId the request names."
                .to_owned(),
        );
        components.add_security_scheme("identity", SecurityScheme::Http(identity));
    }
}

/// The document as this instance serves it. With identity on, the routes that name a user
/// require the `identity` scheme (instead of leaving it optional) and `userId` may be left out
/// of `POST /queue/tokens`.
#[must_use]
pub fn document(identity_on: bool) -> &'static str {
    static OFF: OnceLock<String> = OnceLock::new();
    static ON: OnceLock<String> = OnceLock::new();
    let cell = if identity_on { &ON } else { &OFF };
    cell.get_or_init(|| {
        let mut doc = match serde_json::to_value(ApiDoc::openapi()) {
            Ok(doc) => doc,
            Err(_) => return "{}".to_owned(),
        };
        if identity_on {
            require_identity(&mut doc);
        }
        serde_json::to_string(&doc).unwrap_or_else(|_| "{}".to_owned())
    })
}

fn require_identity(doc: &mut Value) {
    if let Some(paths) = doc.get_mut("paths").and_then(Value::as_object_mut) {
        for item in paths.values_mut().filter_map(Value::as_object_mut) {
            for op in item.values_mut().filter_map(Value::as_object_mut) {
                let names_identity = op
                    .get("security")
                    .and_then(Value::as_array)
                    .is_some_and(|reqs| reqs.iter().any(|r| r.get("identity").is_some()));
                if names_identity {
                    op.insert("security".to_owned(), json!([{ "identity": [] }]));
                }
            }
        }
    }
    if let Some(required) = doc.pointer_mut("/components/schemas/IssueTokenRequest/required") {
        *required = json!([]);
    }
}

/// Sets the bounds of the request fields from the domain's limits, so the document states
/// exactly what the server checks, from the one place it checks it.
#[derive(Debug)]
struct Bounds;

/// Inclusive bounds of a request field: a number's value or a string's length.
#[derive(Debug, Clone, Copy)]
enum Bound {
    Value(i64, i64),
    Length(usize, usize),
}

impl Bound {
    fn value<T: Copy + Into<i64>>(range: &std::ops::RangeInclusive<T>) -> Self {
        Self::Value((*range.start()).into(), (*range.end()).into())
    }

    fn length(range: &std::ops::RangeInclusive<usize>) -> Self {
        Self::Length(*range.start(), *range.end())
    }
}

/// Every bounded request field: (schema, property, bound).
fn bounded_fields() -> Vec<(&'static str, &'static str, Bound)> {
    use domain::{catalogue, money, queue};
    let name = Bound::length(&catalogue::limits::NAME_CHARS);
    let optional_name = Bound::Length(0, *catalogue::limits::NAME_CHARS.end());
    vec![
        ("ChargeRequest", "amount", Bound::Value(1, money::MAX_CHARGE)),
        ("QueuePatchRequest", "admitBatch", Bound::value(&queue::limits::BATCH)),
        ("QueuePatchRequest", "admitIntervalSecs", Bound::value(&queue::limits::INTERVAL_SECS)),
        ("QueuePatchRequest", "activeTtlSecs", Bound::value(&queue::limits::ACTIVE_TTL_SECS)),
        ("QueuePatchRequest", "maxActive", Bound::value(&queue::limits::MAX_ACTIVE)),
        ("SeatRequest", "number", Bound::value(&catalogue::limits::SEAT_NUMBER)),
        ("SeatRequest", "price", Bound::value(&catalogue::limits::PRICE)),
        ("ConcertRequest", "title", name),
        ("ConcertRequest", "artist", optional_name),
        ("ConcertRequest", "venue", optional_name),
    ]
}

impl Modify for Bounds {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let Some(components) = openapi.components.as_mut() else { return };
        for (schema, property, bound) in bounded_fields() {
            let Some(RefOr::T(Schema::Object(object))) = components.schemas.get_mut(schema) else { continue };
            let Some(RefOr::T(Schema::Object(field))) = object.properties.get_mut(property) else { continue };
            match bound {
                Bound::Value(min, max) => {
                    field.minimum = Some(min.into());
                    field.maximum = Some(max.into());
                }
                Bound::Length(min, max) => {
                    field.min_length = Some(min);
                    field.max_length = Some(max);
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every bound the server checks is stated in the document, with the domain's values.
    #[test]
    fn the_document_states_every_bound_from_the_domains_limits() {
        let doc = serde_json::to_value(ApiDoc::openapi()).expect("the document serialises");
        for (schema, property, bound) in bounded_fields() {
            let field = &doc["components"]["schemas"][schema]["properties"][property];
            let (keys, min, max) = match bound {
                Bound::Value(min, max) => (["minimum", "maximum"], min, max),
                Bound::Length(min, max) => {
                    (["minLength", "maxLength"], i64::try_from(min).unwrap_or(-1), i64::try_from(max).unwrap_or(-1))
                }
            };
            let got = keys.map(|k| field[k].as_i64());
            assert_eq!(got, [Some(min), Some(max)], "{schema}.{property}: {field}");
        }
    }
}
