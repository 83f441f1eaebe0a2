//! Operations and documents: health, metrics, the OpenAPI document and its browsable reference
//! (`/docs`), the problem type documents, the buyer's page, and the fallbacks.

use std::borrow::Cow;
use std::sync::{Arc, OnceLock};

use actix_web::http::header;
use actix_web::http::StatusCode;
use actix_web::{web, HttpResponse};
use domain::error::StoreError;
use rust_embed::RustEmbed;
use utoipa_swagger_ui::Config;

use super::json;
use crate::dto::HealthResponse;
use crate::error::{ApiError, ErrorCode};
use crate::extract::MetricsAccess;
use crate::metrics;
use crate::responses::{AdminRows, Fails, NotFoundRows};
use crate::state::ApiState;

/// The buyer's page's Content-Security-Policy: everything from this origin only, no inline
/// script or style, no framing.
pub const PAGE_CSP: &str =
    "default-src 'self'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'; object-src 'none'";

/// `/docs`'s Content-Security-Policy: Swagger UI styles elements inline and draws icons as
/// `data:` images; scripts still come from this origin only.
pub const DOCS_CSP: &str = "default-src 'self'; style-src 'self' 'unsafe-inline'; img-src 'self' data:; base-uri 'self'; form-action 'self'; frame-ancestors 'none'; object-src 'none'";

// ---- health ---------------------------------------------------------------------------------

/// The process is up (answered on the HTTP worker, never touching a store).
#[utoipa::path(
    get, path = "/health/live", tag = "operations",
    responses((status = 200, description = "Alive", body = HealthResponse))
)]
pub async fn live() -> Result<HttpResponse, ApiError> {
    json(StatusCode::OK, &HealthResponse { status: "ok".to_owned() })
}

/// Every store answers.
#[utoipa::path(
    get, path = "/health/ready", tag = "operations",
    responses(
        (status = 200, description = "Ready", body = HealthResponse),
        Fails<StoreError>,
    )
)]
pub async fn ready(state: web::Data<ApiState>) -> Result<HttpResponse, ApiError> {
    state.check_ready().await?;
    json(StatusCode::OK, &HealthResponse { status: "ready".to_owned() })
}

// ---- metrics --------------------------------------------------------------------------------

/// Prometheus text exposition of this instance's metrics. Needs the operator token when one is
/// configured.
#[utoipa::path(
    get, path = "/metrics", tag = "operations",
    security((), ("admin" = [])),
    responses(
        (status = 200, description = "Prometheus text format 0.0.4", content_type = "text/plain; version=0.0.4",
            body = String),
        Fails<(AdminRows, NotFoundRows)>,
    )
)]
pub async fn metrics(state: web::Data<ApiState>, _access: MetricsAccess) -> Result<HttpResponse, ApiError> {
    let Some(handle) = state.metrics().cloned() else {
        return Err(ApiError::not_found("metrics are not enabled on this instance"));
    };
    // Gauges of the line are read now, so a scrape is never staler than itself; a failing
    // store leaves the last values (and is counted in store_errors_total).
    match state.store(|t| t.rooms_overview()).await {
        Ok(rooms) => {
            for r in &rooms {
                let room = r.room.id.as_str();
                metrics::describe_room(room);
                metrics::set_room_gauge(metrics::QUEUE_WAITING, room, r.stats.waiting);
                metrics::set_room_gauge(metrics::QUEUE_ACTIVE, room, r.stats.active);
                metrics::set_room_gauge(metrics::QUEUE_PAUSED, room, u64::from(r.room.settings.paused));
                metrics::set_room_gauge(metrics::QUEUE_ADMITTING, room, u64::from(r.room.admits_at(r.stats.now)));
            }
        }
        Err(e) => tracing::warn!(error = %e, "metrics scrape could not read the queue"),
    }
    if let Some(pool) = state.pool() {
        let conns = pool();
        metrics::set_gauge(metrics::DB_POOL_CONNECTIONS, &[("state", "idle")], u64::from(conns.idle));
        metrics::set_gauge(metrics::DB_POOL_CONNECTIONS, &[("state", "busy")], u64::from(conns.busy));
    }
    handle.run_upkeep();
    Ok(HttpResponse::Ok().content_type(metrics::CONTENT_TYPE).body(metrics::render(&handle)))
}

// ---- documents ------------------------------------------------------------------------------

/// The OpenAPI 3 document of this API.
#[utoipa::path(
    get, path = "/openapi.json", tag = "operations",
    responses((status = 200, description = "The OpenAPI 3 document", content_type = "application/json", body = Object))
)]
pub async fn openapi(state: web::Data<ApiState>) -> HttpResponse {
    let doc = crate::openapi::document(state.identity().is_some());
    HttpResponse::Ok().content_type("application/json").body(doc)
}

fn swagger_config() -> Arc<Config<'static>> {
    static CONFIG: OnceLock<Arc<Config<'static>>> = OnceLock::new();
    CONFIG.get_or_init(|| Arc::new(Config::from("/openapi.json"))).clone()
}

/// The browsable API reference (Swagger UI, embedded in the binary).
#[utoipa::path(
    get, path = "/docs", tag = "operations",
    responses((status = 200, description = "Swagger UI", content_type = "text/html"))
)]
pub async fn docs_index() -> Result<HttpResponse, ApiError> {
    docs_file("index.html")
}

/// A file of the API reference (scripts, styles, icons).
#[utoipa::path(
    get, path = "/docs/{file}", tag = "operations",
    params(("file" = String, Path, description = "A file of Swagger UI")),
    responses(
        (status = 200, description = "The file"),
        Fails<NotFoundRows>,
    )
)]
pub async fn docs_asset(path: web::Path<String>) -> Result<HttpResponse, ApiError> {
    docs_file(&path)
}

fn docs_file(name: &str) -> Result<HttpResponse, ApiError> {
    let name = if name.is_empty() { "index.html" } else { name };
    let file = utoipa_swagger_ui::serve(name, swagger_config())
        .map_err(|e| ApiError::internal(&e))?
        .ok_or_else(|| ApiError::not_found("no such file of the API reference"))?;
    let mut bytes = file.bytes.into_owned();
    if name == "index.html" {
        // Served at `/docs` as well as `/docs/`: a base makes its relative links work from both.
        let html = String::from_utf8_lossy(&bytes).replacen("<head>", "<head><base href=\"/docs/\">", 1);
        bytes = html.into_bytes();
    }
    let mut res = HttpResponse::Ok();
    if file.gzpipped {
        res.insert_header((header::CONTENT_ENCODING, "gzip"));
    }
    res.content_type(file.content_type)
        .insert_header((header::CONTENT_SECURITY_POLICY, DOCS_CSP))
        .insert_header((header::X_CONTENT_TYPE_OPTIONS, "nosniff"));
    Ok(res.body(bytes))
}

/// The documentation of one problem `type` (from the same table as the error bodies).
#[utoipa::path(
    get, path = "/problems/{slug}", tag = "operations",
    params(("slug" = String, Path, description = "The problem type, e.g. `seat-unavailable`")),
    responses(
        (status = 200, description = "What the problem means and what to do", content_type = "text/html"),
        Fails<NotFoundRows>,
    )
)]
pub async fn problem_type(path: web::Path<String>) -> Result<HttpResponse, ApiError> {
    let code = ErrorCode::from_slug(&path).ok_or_else(|| ApiError::not_found("no such problem type"))?;
    let status = code.status();
    // Every piece comes from the static table: nothing from the request is echoed.
    let html = format!(
        "<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\"><title>{title}</title></head><body>\
         <h1>{title}</h1><p>HTTP {status} &middot; <code>{code}</code></p><p>{description}</p>\
         <p>Error bodies are RFC 9457 problem details (<code>application/problem+json</code>) with this \
         <code>type</code> and <code>\"code\": \"{code}\"</code>.</p></body></html>",
        title = code.title(),
        status = status.as_u16(),
        code = code.as_str(),
        description = code.description(),
    );
    Ok(HttpResponse::Ok()
        .content_type("text/html; charset=utf-8")
        .insert_header((header::CONTENT_SECURITY_POLICY, PAGE_CSP))
        .body(html))
}

// ---- the buyer's page -----------------------------------------------------------------------

/// The page's files, embedded in the binary at build time (also in debug builds).
#[derive(RustEmbed)]
#[folder = "assets/"]
struct Assets;

/// The waiting room and seat map in the browser.
#[utoipa::path(
    get, path = "/", tag = "page",
    responses((status = 200, description = "The buyer's page", content_type = "text/html"))
)]
pub async fn page(state: web::Data<ApiState>) -> Result<HttpResponse, ApiError> {
    match state.identity() {
        None => asset("index.html"),
        Some(identity) => signed_in_page(identity),
    }
}

/// The page of an instance with identity on: the same file, told in `<meta>` elements which
/// issuer and client to sign in with, and allowed to fetch from the issuer (discovery and token
/// endpoint) by its Content-Security-Policy.
fn signed_in_page(identity: &crate::identity::Identity) -> Result<HttpResponse, ApiError> {
    let file = Assets::get("index.html").ok_or_else(|| ApiError::not_found("no such file"))?;
    let config = identity.config();
    let mut metas = format!(
        "<head>\n  <meta name=\"concert-auth-issuer\" content=\"{}\">\n  <meta name=\"concert-auth-user-claim\" content=\"{}\">",
        html_attr(&config.issuer),
        html_attr(&config.user_claim)
    );
    if let Some(client) = &config.page_client_id {
        metas.push_str(&format!("\n  <meta name=\"concert-auth-client-id\" content=\"{}\">", html_attr(client)));
    }
    let html = String::from_utf8_lossy(&file.data).replacen("<head>", &metas, 1);
    let csp = format!("{PAGE_CSP}; connect-src 'self' {}", identity.page_origins().join(" "));
    Ok(page_file("text/html; charset=utf-8", &csp, "no-cache").body(html))
}

/// A response carrying a file of a page (the buyer's or the console): its content type, the
/// page's Content-Security-Policy, the headers every page file has, and its caching.
fn page_file(content_type: &str, csp: &str, cache: &'static str) -> actix_web::HttpResponseBuilder {
    let mut res = HttpResponse::Ok();
    res.content_type(content_type)
        .insert_header((header::CONTENT_SECURITY_POLICY, csp.to_owned()))
        .insert_header((header::X_CONTENT_TYPE_OPTIONS, "nosniff"))
        .insert_header((header::REFERRER_POLICY, "no-referrer"))
        .insert_header((header::CACHE_CONTROL, cache));
    res
}

/// Text made safe inside a double-quoted HTML attribute.
fn html_attr(s: &str) -> String {
    s.replace('&', "&amp;").replace('"', "&quot;").replace('<', "&lt;").replace('>', "&gt;")
}

/// A file of the buyer's page (script, style, image).
#[utoipa::path(
    get, path = "/assets/{file}", tag = "page",
    params(("file" = String, Path, description = "A file of the page, e.g. `app.js`")),
    responses(
        (status = 200, description = "The file, with its content type"),
        Fails<NotFoundRows>,
    )
)]
pub async fn page_asset(path: web::Path<String>) -> Result<HttpResponse, ApiError> {
    asset(&path)
}

fn asset(name: &str) -> Result<HttpResponse, ApiError> {
    let file = Assets::get(name).ok_or_else(|| ApiError::not_found("no such file"))?;
    let etag =
        format!("\"{}\"", file.metadata.sha256_hash().iter().take(16).map(|b| format!("{b:02x}")).collect::<String>());
    let body: Cow<'static, [u8]> = file.data;
    // Not fingerprinted: revalidate every time (cheap with the ETag), so a new build's page is
    // seen at once.
    Ok(page_file(content_type(name), PAGE_CSP, "no-cache").insert_header((header::ETAG, etag)).body(body.into_owned()))
}

// ---- the operator's console ----------------------------------------------------------------

/// The console's files, embedded in the binary at build time (also in debug builds).
#[derive(RustEmbed)]
#[folder = "console/"]
struct ConsoleAssets;

/// The operator's console: rooms, their charts, steering, sales and the operator log in the
/// browser. The page itself holds no secret; it asks for the operator token and sends it only
/// to `/admin/*`. Served only while the operator API is on (404 otherwise, like all of
/// `/admin`).
#[utoipa::path(
    get, path = "/admin/console", tag = "admin",
    responses((status = 200, description = "The operator's console", content_type = "text/html"))
)]
pub async fn console() -> Result<HttpResponse, ApiError> {
    console_file("index.html")
}

/// A file of the operator's console (script, style).
#[utoipa::path(
    get, path = "/admin/console/{file}", tag = "admin",
    params(("file" = String, Path, description = "A file of the console, e.g. `console.js`")),
    responses(
        (status = 200, description = "The file, with its content type"),
        Fails<NotFoundRows>,
    )
)]
pub async fn console_asset(path: web::Path<String>) -> Result<HttpResponse, ApiError> {
    console_file(&path)
}

fn console_file(name: &str) -> Result<HttpResponse, ApiError> {
    let file = ConsoleAssets::get(name).ok_or_else(|| ApiError::not_found("no such file"))?;
    Ok(page_file(content_type(name), PAGE_CSP, "no-store")
        .insert_header((header::HeaderName::from_static("x-robots-tag"), "noindex"))
        .body(file.data.into_owned()))
}

/// The content type of a page file, by extension.
fn content_type(name: &str) -> &'static str {
    match name.rsplit_once('.').map(|(_, ext)| ext.to_ascii_lowercase()).as_deref() {
        Some("html") => "text/html; charset=utf-8",
        Some("js" | "mjs") => "text/javascript; charset=utf-8",
        Some("css") => "text/css; charset=utf-8",
        Some("json") => "application/json",
        Some("webmanifest") => "application/manifest+json",
        Some("svg") => "image/svg+xml",
        Some("png") => "image/png",
        Some("jpg" | "jpeg") => "image/jpeg",
        Some("webp") => "image/webp",
        Some("ico") => "image/x-icon",
        Some("woff2") => "font/woff2",
        Some("txt") => "text/plain; charset=utf-8",
        _ => "application/octet-stream",
    }
}

// ---- fallbacks ------------------------------------------------------------------------------

/// Any path no route matches (and every `/admin/*` while the operator API is off).
pub async fn not_found() -> Result<HttpResponse, ApiError> {
    Err(ApiError::not_found("no such route"))
}

/// A known path with a method it does not serve; `Allow` lists the ones it does.
pub async fn method_not_allowed(allow: &'static str) -> Result<HttpResponse, ApiError> {
    Err(ApiError::method_not_allowed(allow))
}
