//! Prometheus metrics through the `metrics` facade and `metrics-exporter-prometheus` (no HTTP
//! listener of its own: `GET /metrics` renders the handle).
//!
//! - [`install_recorder`] installs the global recorder once, whoever calls it first (the app,
//!   each test), and returns its handle.
//! - [`track`] is the middleware behind `http_requests_total{method,route,status}` and
//!   `http_request_duration_seconds{method,route}`; `route` is the path template exactly as
//!   the contract spells it, `unmatched` when no route matched (so raw paths never become
//!   labels and the label set stays bounded).
//! - The domain counters are incremented where the use case succeeded (handlers), except
//!   [`QUEUE_TOKENS_ADMITTED_TOTAL`], which the scheduler crate increments under the same name
//!   (admission is not an HTTP call); the gauges are refreshed at scrape time.

use std::sync::{Mutex, OnceLock, PoisonError};
use std::time::Instant;

use actix_web::body::MessageBody;
use actix_web::dev::{ServiceRequest, ServiceResponse};
use actix_web::middleware::Next;
use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};

/// Counter: requests answered, by `method`, `route`, `status`.
pub const HTTP_REQUESTS_TOTAL: &str = "http_requests_total";
/// Histogram: seconds to answer, by `method`, `route`.
pub const HTTP_REQUEST_DURATION_SECONDS: &str = "http_request_duration_seconds";
/// Gauge: WAITING tokens (refreshed at scrape).
pub const QUEUE_WAITING: &str = "queue_waiting";
/// Gauge: unexpired ACTIVE tokens (refreshed at scrape).
pub const QUEUE_ACTIVE: &str = "queue_active";
/// Gauge: 1 while an operator has paused admission, else 0 (refreshed at scrape).
pub const QUEUE_PAUSED: &str = "queue_paused";
/// Gauge: 1 while the room admits (it has opened and is not paused), else 0 (refreshed at
/// scrape): what an alert on a stalled line needs, since a pre-queue waits on purpose.
pub const QUEUE_ADMITTING: &str = "queue_admitting";
/// Counter: new tokens issued by this instance.
pub const QUEUE_TOKENS_ISSUED_TOTAL: &str = "queue_tokens_issued_total";
pub use domain::metric_names::{QUEUE_TOKENS_ABANDONED_TOTAL, QUEUE_TOKENS_ADMITTED_TOTAL, ROOM_LABEL};
/// Counter: seats held by this instance.
pub const RESERVATIONS_HELD_TOTAL: &str = "reservations_held_total";
/// Counter: payments made by this instance (replays not counted).
pub const PAYMENTS_TOTAL: &str = "payments_total";
pub use domain::metric_names::STORE_ERRORS_TOTAL;
/// Counter: store calls this instance made, by `path`: `blocking` (a hop to the blocking pool,
/// under a store slot) or `async` (awaited on the HTTP worker: the front door's queue calls on
/// a store with a non-blocking client, see `crate::state`).
pub const STORE_CALLS_TOTAL: &str = "store_calls_total";
/// Gauge: database pool connections, by `state` (`idle`, `busy`).
pub const DB_POOL_CONNECTIONS: &str = "db_pool_connections";

/// The media type of the text exposition format.
pub const CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

/// The label of a request no route matched.
pub const UNMATCHED: &str = "unmatched";

/// Buckets of `http_request_duration_seconds`: 1 ms to 10 s, dense where the contract's
/// targets are (p99 within 10x p50, nothing over 250 ms).
pub const DURATION_BUCKETS: [f64; 14] =
    [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.15, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0];

/// Why the recorder could not be installed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("cannot install the Prometheus recorder: {0}")]
pub struct InstallError(String);

/// Installs the global Prometheus recorder on the first call and returns its handle; later
/// calls return the same handle. Also describes every family of this crate, so a scrape lists
/// them before any traffic.
///
/// # Errors
/// [`InstallError`] when another recorder was installed first by someone else.
pub fn install_recorder() -> Result<PrometheusHandle, InstallError> {
    static HANDLE: OnceLock<PrometheusHandle> = OnceLock::new();
    static INSTALLING: Mutex<()> = Mutex::new(());
    if let Some(handle) = HANDLE.get() {
        return Ok(handle.clone());
    }
    let _one_at_a_time = INSTALLING.lock().unwrap_or_else(PoisonError::into_inner);
    if let Some(handle) = HANDLE.get() {
        return Ok(handle.clone());
    }
    let handle = PrometheusBuilder::new()
        .set_buckets_for_metric(Matcher::Full(HTTP_REQUEST_DURATION_SECONDS.to_owned()), &DURATION_BUCKETS)
        .map_err(|e| InstallError(e.to_string()))?
        .install_recorder()
        .map_err(|e| InstallError(e.to_string()))?;
    describe();
    Ok(HANDLE.get_or_init(|| handle).clone())
}

fn describe() {
    use metrics::{describe_counter, describe_gauge, describe_histogram, Unit};
    let [(_, _, requests), (_, _, durations)] = LATE_FAMILIES;
    describe_counter!(HTTP_REQUESTS_TOTAL, requests);
    describe_histogram!(HTTP_REQUEST_DURATION_SECONDS, Unit::Seconds, durations);
    describe_gauge!(QUEUE_WAITING, "WAITING queue tokens");
    describe_gauge!(QUEUE_ACTIVE, "Unexpired ACTIVE queue tokens");
    describe_gauge!(QUEUE_PAUSED, "1 while an operator has paused admission");
    describe_gauge!(QUEUE_ADMITTING, "1 while the room admits: opened and not paused");
    describe_counter!(QUEUE_TOKENS_ISSUED_TOTAL, "New queue tokens issued by this instance");
    describe_counter!(QUEUE_TOKENS_ADMITTED_TOTAL, "Queue tokens admitted by this instance's scheduler, by room");
    describe_counter!(
        QUEUE_TOKENS_ABANDONED_TOTAL,
        "WAITING tokens this instance's scheduler skipped because their buyer had left, by room"
    );
    describe_counter!(RESERVATIONS_HELD_TOTAL, "Seats held by this instance");
    describe_counter!(PAYMENTS_TOTAL, "Payments made by this instance");
    describe_counter!(STORE_ERRORS_TOTAL, "Store failures, by kind");
    describe_counter!(STORE_CALLS_TOTAL, "Store calls, by path: blocking (a hop to the blocking pool) or async");
    describe_gauge!(DB_POOL_CONNECTIONS, "Database pool connections, by state");
    // Every series whose labels are known at start is there at 0 from the first scrape, so an
    // alert on it works before the first event (a rate over a series that appears with its
    // first failure misses that failure); the HTTP families get their series with their first
    // request, and their TYPE lines from `render`.
    for name in [RESERVATIONS_HELD_TOTAL, PAYMENTS_TOTAL] {
        metrics::counter!(name).absolute(0);
    }
    describe_room(domain::room::RoomId::MAIN);
    for kind in <domain::error::StoreError as strum::VariantNames>::VARIANTS {
        metrics::counter!(STORE_ERRORS_TOTAL, "kind" => *kind).absolute(0);
    }
    for path in [PATH_BLOCKING, PATH_ASYNC] {
        metrics::counter!(STORE_CALLS_TOTAL, "path" => path).absolute(0);
    }
    for state in ["idle", "busy"] {
        metrics::gauge!(DB_POOL_CONNECTIONS, "state" => state).set(0.0);
    }
}

/// The families whose series appear only with their first observation, and their type.
const LATE_FAMILIES: [(&str, &str, &str); 2] = [
    (HTTP_REQUESTS_TOTAL, "counter", "HTTP requests answered, by method, route template and status"),
    (HTTP_REQUEST_DURATION_SECONDS, "histogram", "Time to answer an HTTP request"),
];

/// The exposition of `handle`, with the HELP and TYPE lines of every family of the contract
/// even before its first series (a family without samples is valid in the text format).
#[must_use]
pub fn render(handle: &PrometheusHandle) -> String {
    let mut text = handle.render();
    for (name, kind, help) in LATE_FAMILIES {
        if !text.contains(&format!("# TYPE {name} ")) {
            text.push_str(&format!("# HELP {name} {help}\n# TYPE {name} {kind}\n"));
        }
    }
    text
}

/// Sets a gauge to a count read at scrape time.
pub(crate) fn set_gauge(name: &'static str, labels: &[(&'static str, &'static str)], value: u64) {
    let labels: Vec<metrics::Label> = labels.iter().map(|(k, v)| metrics::Label::new(*k, *v)).collect();
    #[allow(clippy::cast_precision_loss, reason = "counts far below 2^53 are exact as f64")]
    metrics::gauge!(name, labels).set(value as f64);
}

/// The `path` of a store call made on the blocking pool.
pub const PATH_BLOCKING: &str = "blocking";
/// The `path` of a store call awaited on the HTTP worker.
pub const PATH_ASYNC: &str = "async";

pub(crate) fn record_store_call(path: &'static str) {
    metrics::counter!(STORE_CALLS_TOTAL, "path" => path).increment(1);
}

pub(crate) fn record_issued(room: &str) {
    metrics::counter!(QUEUE_TOKENS_ISSUED_TOTAL, ROOM_LABEL => room.to_owned()).increment(1);
}

/// The queue families a room has (`{room="<id>"}`), at 0 until their first event: called for
/// `main` at start, for every room the app finds at start, for a room when it is created, and at
/// every scrape for the rooms that exist (a room created on another instance). Adding 0 to a
/// counter leaves it as it is.
pub fn describe_room(room: &str) {
    for name in [QUEUE_TOKENS_ISSUED_TOTAL, QUEUE_TOKENS_ADMITTED_TOTAL, QUEUE_TOKENS_ABANDONED_TOTAL] {
        metrics::counter!(name, ROOM_LABEL => room.to_owned()).increment(0);
    }
    for name in [QUEUE_WAITING, QUEUE_ACTIVE, QUEUE_PAUSED, QUEUE_ADMITTING] {
        // Registering the gauge is enough: a new gauge reads 0, a known one keeps its value.
        let _ = metrics::gauge!(name, ROOM_LABEL => room.to_owned());
    }
}

/// Sets a room's gauge to a count read at scrape time.
pub(crate) fn set_room_gauge(name: &'static str, room: &str, value: u64) {
    #[allow(clippy::cast_precision_loss, reason = "counts far below 2^53 are exact as f64")]
    metrics::gauge!(name, ROOM_LABEL => room.to_owned()).set(value as f64);
}

pub(crate) fn record_held() {
    metrics::counter!(RESERVATIONS_HELD_TOTAL).increment(1);
}

pub(crate) fn record_paid() {
    metrics::counter!(PAYMENTS_TOTAL).increment(1);
}

/// Records every request's count and duration. Wraps everything else, so rejections by the
/// other middlewares (413, 429) are counted too.
///
/// # Errors
/// Whatever the wrapped service returns (the other middlewares never return errors).
pub async fn track(
    req: ServiceRequest,
    next: Next<impl MessageBody + 'static>,
) -> Result<ServiceResponse<impl MessageBody>, actix_web::Error> {
    let started = Instant::now();
    let method = req.method().as_str().to_owned();
    let state = req.app_data::<actix_web::web::Data<crate::ApiState>>().cloned();
    let res = next.call(req).await;
    // Read once routed, from the route table, not the raw path: a template or `unmatched`.
    // Routing recorded which resource matched, so this is a short walk by index; only a request
    // answered before or without routing (a 404, a 413 or 429 of the checks before routing) has
    // its path matched against the table. An `Err` (which no inner middleware returns) keeps
    // no request to read.
    let (status, route) = match &res {
        Ok(res) => (res.status(), res.request().match_pattern()),
        Err(e) => (e.as_response_error().status_code(), None),
    };
    let route = route.unwrap_or_else(|| UNMATCHED.to_owned());
    metrics::counter!(HTTP_REQUESTS_TOTAL, "method" => method.clone(), "route" => route.clone(), "status" => status.as_str().to_owned())
        .increment(1);
    metrics::histogram!(HTTP_REQUEST_DURATION_SECONDS, "method" => method, "route" => route)
        .record(started.elapsed().as_secs_f64());
    if let Some(state) = state {
        state.maybe_upkeep();
    }
    res
}
