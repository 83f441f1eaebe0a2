//! Logging, set up once per process, and the per-request root span.

use std::time::Instant;

use actix_web::body::MessageBody;
use actix_web::dev::{ServiceRequest, ServiceResponse};
use actix_web::HttpMessage as _;
use anyhow::anyhow;
use tracing::Span;
use tracing_actix_web::{DefaultRootSpanBuilder, RootSpanBuilder};
use tracing_subscriber::EnvFilter;

use crate::settings::{LogFormat, LogSettings};

/// Installs the global subscriber: `filter` in `tracing` syntax, text or JSON lines on stderr
/// (stdout stays for command output such as `check-invariants`' report).
///
/// # Errors
/// When the filter does not parse or a subscriber is already installed.
pub fn init(settings: &LogSettings) -> anyhow::Result<()> {
    let filter = EnvFilter::try_new(&settings.log_filter).map_err(|e| anyhow!("invalid log filter: {e}"))?;
    // Colours only for a person at a terminal, never into files or log shippers.
    let ansi = std::io::IsTerminal::is_terminal(&std::io::stderr());
    let builder = tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr).with_ansi(ansi);
    match settings.log_format {
        LogFormat::Text => builder.try_init(),
        LogFormat::Json => builder.json().with_current_span(true).with_span_list(false).try_init(),
    }
    .map_err(|e| anyhow!("cannot install the log subscriber: {e}"))
}

/// When the request started, kept in its extensions for the latency.
#[derive(Debug, Clone, Copy)]
struct Started(Instant);

/// The root span of each request carries tracing-actix-web's fields (request id, method, route,
/// target, status); when it ends, one `request completed` event adds the status and latency.
#[derive(Debug, Clone, Copy, Default)]
pub struct RequestSpan;

impl RootSpanBuilder for RequestSpan {
    fn on_request_start(request: &ServiceRequest) -> Span {
        request.extensions_mut().insert(Started(Instant::now()));
        tracing_actix_web::root_span!(request)
    }

    fn on_request_end<B: MessageBody>(span: Span, outcome: &Result<ServiceResponse<B>, actix_web::Error>) {
        DefaultRootSpanBuilder::on_request_end(span.clone(), outcome);
        let (status, started) = match outcome {
            Ok(res) => (res.status(), res.request().extensions().get::<Started>().copied()),
            Err(e) => (e.as_response_error().status_code(), None),
        };
        let latency_ms = started.map(|Started(t)| t.elapsed().as_secs_f64() * 1e3);
        let status = status.as_u16();
        span.in_scope(|| {
            // 5xx causes were logged where they were handled; this line is the access log.
            if status >= 500 {
                tracing::warn!(status, latency_ms, "request completed");
            } else {
                tracing::info!(status, latency_ms, "request completed");
            }
        });
    }
}
