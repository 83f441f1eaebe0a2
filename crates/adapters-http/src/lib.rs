//! The HTTP adapter: the public contract (`docs/api.md`) served with actix-web on top of the
//! domain's use cases, plus the operator API, metrics, the API reference and the buyer's page.
//! It translates and decides nothing: JSON and paths in, one [`domain::service::Ticketing`]
//! call (on a bounded store slot when it touches a store), JSON or problem details out. It
//! depends on `domain` only; the app builds an [`ApiState`] and mounts [`configure`].
//!
//! ```ignore
//! let metrics = adapters_http::metrics::install_recorder()?;
//! let state = ApiState::builder(ticketing)
//!     .readiness(move || store.ping())
//!     .store_slots(pool_size)
//!     .admin_token(settings.admin_token.as_deref())
//!     .issue_rate_per_min(settings.issue_rate_per_min)
//!     .trusted_proxies(TrustedProxies::parse_list(&settings.trusted_proxies)?)
//!     .metrics(metrics)
//!     .pool_gauge(move || PoolConnections { idle, busy })
//!     .build();
//! HttpServer::new(move || App::new().configure(adapters_http::configure(state.clone())))
//! ```
//!
//! # Layout
//! - [`configure`]: routes, middlewares and fallbacks, to mount with `App::configure`.
//! - [`state`]: [`ApiState`] and its builder, the store slots, the [`Readiness`] probe.
//! - [`routes`]: one handler per endpoint, each documented for OpenAPI (`public`, `admin`,
//!   `ops`).
//! - [`extract`]: bearer tokens, the operator, signed identities, `Idempotency-Key`, ids,
//!   strict JSON bodies.
//! - [`identity`]: signed identities (`AUTH_ISSUER`): JWT verification and the issuer's keys.
//! - [`middleware`]: the declared body size and the issue rate limit, before routing.
//! - [`history`]: each room's recent figures in this instance's memory, for the console.
//! - [`limit`]: the per-address rate limiter with bounded memory.
//! - [`client`]: the client address behind trusted proxies.
//! - [`metrics`]: the Prometheus recorder, the request metrics, the metric names.
//! - [`dto`], [`wire`]: request and response bodies; how enums, times and ids go on the wire.
//! - [`error`]: the single mapping of every failure to problem+json, and its code table.
//! - [`responses`]: the error responses of each operation in the OpenAPI document.
//! - [`strict_json`]: one reading of every JSON body (no key twice).
//! - [`openapi`]: the generated OpenAPI 3 document.

pub mod client;
pub mod dto;
pub mod error;
pub mod extract;
pub mod history;
pub mod identity;
pub mod limit;
pub mod metrics;
pub mod middleware;
pub mod openapi;
pub mod responses;
pub mod routes;
pub mod state;
pub mod strict_json;
pub mod wire;

use actix_web::middleware::from_fn;
use actix_web::web;

pub use client::{InvalidProxy, TrustedProxies};
pub use error::{ApiError, ErrorCode, Problem};
pub use extract::{ADMIN_BODY_LIMIT, BODY_LIMIT};
pub use identity::{Identity, IdentityConfig};
pub use state::{ApiState, ApiStateBuilder, PoolConnections, Readiness, StoreCalls};

use routes::{admin, ops, public, rooms};

/// Mounts the whole API: `App::new().configure(adapters_http::configure(state))`. The operator
/// API is mounted only when the state has an operator token; without one every `/admin/*` path
/// falls through to the 404 fallback.
pub fn configure(state: ApiState) -> impl FnOnce(&mut web::ServiceConfig) {
    move |cfg| {
        let admin_on = state.admin_enabled();
        cfg.app_data(web::Data::new(state))
            // Bodies are read by `extract::Body`; these keep any other extractor's rejection
            // a contract problem too.
            .app_data(web::JsonConfig::default().limit(BODY_LIMIT).error_handler(error::json_error))
            .app_data(web::PathConfig::default().error_handler(error::path_error))
            .app_data(web::QueryConfig::default().error_handler(error::query_error));
        // An empty-prefix scope so the middlewares and the 404 fallback cover every path,
        // including unknown ones. Outermost first: metrics, rate limit, body size.
        let mut scope = web::scope("")
            .wrap(from_fn(middleware::reject_oversized))
            .wrap(from_fn(middleware::limit_issue))
            .wrap(from_fn(metrics::track))
            // HEAD too where a browser, a proxy or an orchestrator's probe may ask it.
            .service(resource("/", "GET, HEAD").route(web::get().to(ops::page)).route(web::head().to(ops::page)))
            .service(resource("/assets/{file}", "GET").route(web::get().to(ops::page_asset)))
            .service(resource("/queue/tokens", "POST").route(web::post().to(public::issue_token)))
            .service(resource("/queue/token", "GET").route(web::get().to(public::read_token)))
            .service(resource("/rooms", "GET").route(web::get().to(rooms::list_rooms)))
            .service(resource("/rooms/{roomId}", "GET").route(web::get().to(rooms::get_room)))
            .service(resource("/concerts", "GET").route(web::get().to(public::list_concerts)))
            .service(resource("/concerts/{concertId}/schedules", "GET").route(web::get().to(public::list_schedules)))
            .service(resource("/schedules/{scheduleId}/seats", "GET").route(web::get().to(public::list_seats)))
            .service(resource("/reservations", "POST").route(web::post().to(public::reserve)))
            .service(resource("/reservations/{reservationId}", "GET").route(web::get().to(public::get_reservation)))
            .service(resource("/payments", "POST").route(web::post().to(public::pay)))
            .service(resource("/users/{userId}/balance", "GET").route(web::get().to(public::get_balance)))
            .service(resource("/users/{userId}/balance/charge", "POST").route(web::post().to(public::charge)))
            .service(resource("/users/{userId}/balance/history", "GET").route(web::get().to(public::balance_history)))
            .service(
                resource("/health/live", "GET, HEAD").route(web::get().to(ops::live)).route(web::head().to(ops::live)),
            )
            .service(
                resource("/health/ready", "GET, HEAD")
                    .route(web::get().to(ops::ready))
                    .route(web::head().to(ops::ready)),
            )
            .service(resource("/metrics", "GET").route(web::get().to(ops::metrics)))
            .service(resource("/openapi.json", "GET").route(web::get().to(ops::openapi)))
            .service(resource("/docs", "GET").route(web::get().to(ops::docs_index)))
            .service(resource("/docs/", "GET").route(web::get().to(ops::docs_index)))
            .service(resource("/docs/{file}", "GET").route(web::get().to(ops::docs_asset)))
            .service(resource("/problems/{slug}", "GET").route(web::get().to(ops::problem_type)));
        if admin_on {
            scope = scope.service(
                web::scope("/admin")
                    .service(
                        resource("/queue", "GET, PATCH")
                            .route(web::get().to(admin::queue_state))
                            .route(web::patch().to(admin::update_queue)),
                    )
                    .service(resource("/console", "GET").route(web::get().to(ops::console)))
                    .service(resource("/console/{file}", "GET").route(web::get().to(ops::console_asset)))
                    .service(
                        resource("/concerts", "GET, POST")
                            .route(web::get().to(admin::list_concerts))
                            .route(web::post().to(admin::create_concert)),
                    )
                    .service(
                        resource("/concerts/{concertId}/schedules", "POST").route(web::post().to(admin::add_schedule)),
                    )
                    .service(resource("/concerts/{concertId}/sales", "GET").route(web::get().to(admin::sales)))
                    .service(resource("/audit", "GET").route(web::get().to(admin::audit_log)))
                    .service(
                        resource("/rooms", "GET, POST")
                            .route(web::get().to(rooms::list_rooms_admin))
                            .route(web::post().to(rooms::create_room)),
                    )
                    .service(resource("/rooms/{roomId}/history", "GET").route(web::get().to(rooms::room_history)))
                    .service(
                        resource("/rooms/{roomId}", "GET, PATCH")
                            .route(web::get().to(rooms::get_room_admin))
                            .route(web::patch().to(rooms::update_room)),
                    ),
            );
        }
        cfg.service(scope.default_service(web::to(ops::not_found)));
    }
}

/// A resource whose unmatched methods get a 405 problem naming the `allow`ed ones.
fn resource(path: &str, allow: &'static str) -> actix_web::Resource {
    web::resource(path).default_service(web::to(move || ops::method_not_allowed(allow)))
}
