//! The OpenAPI 3 document, generated from the handlers' `#[utoipa::path]` attributes and the
//! DTOs' `ToSchema` derives, so it cannot drift from the code.

use utoipa::openapi::security::{Http, HttpAuthScheme, SecurityScheme};
use utoipa::{Modify, OpenApi};

use crate::dto::{
    BalanceResponse, ChargeRequest, ConcertResponse, HealthResponse, IssueTokenRequest, LedgerEntryResponse,
    LedgerKindDto, PayRequest, PaymentResponse, ReservationResponse, ReservationStatusDto, ReserveRequest,
    ScheduleResponse, SeatResponse, SeatStatusDto, TokenResponse, TokenStatusDto,
};
use crate::error::{ErrorCode, Problem};
use crate::routes;

/// The service's OpenAPI document (`GET /openapi.json`).
#[derive(Debug, OpenApi)]
#[openapi(
    info(
        title = "Concert reservation service",
        description = "Waiting queue, catalogue, seat holds, payments and balances. Errors are RFC 9457 \
                       problem details (`application/problem+json`) with a machine-readable `code`."
    ),
    paths(
        routes::issue_token,
        routes::read_token,
        routes::list_concerts,
        routes::list_schedules,
        routes::list_seats,
        routes::reserve,
        routes::get_reservation,
        routes::pay,
        routes::get_balance,
        routes::charge,
        routes::balance_history,
        routes::live,
        routes::ready,
        routes::openapi,
    ),
    components(schemas(
        IssueTokenRequest, ReserveRequest, PayRequest, ChargeRequest, TokenResponse, TokenStatusDto,
        ConcertResponse, ScheduleResponse, SeatResponse, SeatStatusDto, ReservationResponse,
        ReservationStatusDto, PaymentResponse, BalanceResponse, LedgerEntryResponse, LedgerKindDto,
        HealthResponse, Problem, ErrorCode,
    )),
    modifiers(&BearerAuth),
    tags(
        (name = "queue", description = "The waiting room"),
        (name = "catalogue", description = "Concerts, schedules, seats (ACTIVE token required)"),
        (name = "reservations", description = "Seat holds (ACTIVE token required)"),
        (name = "payments", description = "Payments (ACTIVE token required)"),
        (name = "balance", description = "Balances (no token)"),
        (name = "operations", description = "Health and this document"),
    )
)]
pub struct ApiDoc;

/// Declares the `bearer` security scheme the protected paths name.
#[derive(Debug)]
struct BearerAuth;

impl Modify for BearerAuth {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme("bearer", SecurityScheme::Http(Http::new(HttpAuthScheme::Bearer)));
    }
}
