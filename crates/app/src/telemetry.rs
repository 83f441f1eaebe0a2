//! Logging, set up once per process, and the per-request root span.
//!
//! Log lines go to stderr through a bounded, lossy queue and a writer thread of their own, so a
//! slow, full or closed log sink never stops a request, the scheduler or shutdown: a full queue
//! drops lines, and a sink that fails (a `| grep` that exited, a `| head -1`) is written off
//! silently. Nothing in the logging path can panic on a write error: the writer reports
//! success for bytes it could not write, and the subscriber's own error reporting (which would
//! `eprintln!` to the very stream that failed) is off.

use std::borrow::Cow;
use std::io::{self, Write};
use std::time::Instant;

use actix_web::body::MessageBody;
use actix_web::dev::{ServiceRequest, ServiceResponse};
use actix_web::http::{header, Version};
use actix_web::HttpMessage as _;
use anyhow::anyhow;
use tracing::field::{self, Empty};
use tracing::Span;
use tracing_actix_web::{DefaultRootSpanBuilder, RequestId, RootSpanBuilder};
use tracing_appender::non_blocking::{NonBlockingBuilder, WorkerGuard};
use tracing_subscriber::EnvFilter;

use crate::settings::{LogFormat, LogSettings};

/// Lines held for the writer thread before new ones are dropped.
const QUEUED_LINES: usize = 16_384;

/// stderr that never fails: once a write fails (the reader is gone), later lines are dropped
/// without a system call each.
#[derive(Debug, Default)]
struct ForgivingStderr {
    dead: bool,
}

impl Write for ForgivingStderr {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        if !self.dead && io::stderr().lock().write_all(buf).is_err() {
            self.dead = true;
        }
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        if !self.dead && io::stderr().lock().flush().is_err() {
            self.dead = true;
        }
        Ok(())
    }
}

/// Installs the global subscriber: `filter` in `tracing` syntax, text or JSON lines on stderr
/// (stdout stays for command output such as `check-invariants`' report). Keep the returned
/// guard alive until the process ends: dropping it flushes the queued lines (waiting at most
/// a second for a sink that does not read).
///
/// # Errors
/// When the filter does not parse or a subscriber is already installed.
pub fn init(settings: &LogSettings) -> anyhow::Result<WorkerGuard> {
    let filter = EnvFilter::try_new(&settings.log_filter).map_err(|e| anyhow!("invalid log filter (RUST_LOG): {e}"))?;
    // Colours only for a person at a terminal, never into files or log shippers.
    let ansi = std::io::IsTerminal::is_terminal(&std::io::stderr());
    let (writer, guard) = NonBlockingBuilder::default()
        .lossy(true)
        .buffered_lines_limit(QUEUED_LINES)
        .thread_name("concert-log")
        .finish(ForgivingStderr::default());
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(writer)
        .with_ansi(ansi)
        .log_internal_errors(false);
    match settings.log_format {
        LogFormat::Text => builder.try_init(),
        LogFormat::Json => builder.json().with_current_span(true).with_span_list(false).try_init(),
    }
    .map_err(|e| anyhow!("cannot install the log subscriber: {e}"))?;
    Ok(guard)
}

/// When the request started, kept in its extensions for the latency.
#[derive(Debug, Clone, Copy)]
struct Started(Instant);

/// The root span of each request carries tracing-actix-web's fields (request id, method, route,
/// target, status); when it ends, one `request completed` event adds the status and latency.
///
/// The span is `root_span!`'s, field for field, except that the route (and `otel.name`, made of
/// it) is recorded when the request ends: the span starts before routing, where the route could
/// only be found by matching the path against the whole route table again, while once routed the
/// request knows its resource. Lines logged during the request carry the method and the target;
/// the `request completed` line also carries the route.
#[derive(Debug, Clone, Copy, Default)]
pub struct RequestSpan;

/// The route of a request no route matched, as `root_span!` names it.
const NO_ROUTE: &str = "default";

impl RootSpanBuilder for RequestSpan {
    fn on_request_start(request: &ServiceRequest) -> Span {
        request.extensions_mut().insert(Started(Instant::now()));
        let connection = request.connection_info();
        let user_agent = request.headers().get(header::USER_AGENT).map_or("", |h| h.to_str().unwrap_or(""));
        // Inserted by `TracingLogger` before this is called.
        let request_id = request.extensions().get::<RequestId>().copied();
        tracing::info_span!(
            "HTTP request",
            http.method = %request.method(),
            http.route = Empty,
            http.flavor = %flavor(request.version()),
            http.scheme = %connection.scheme(),
            http.host = %connection.host(),
            http.client_ip = %connection.realip_remote_addr().unwrap_or(""),
            http.user_agent = %user_agent,
            http.target = %request.uri().path_and_query().map_or("", |p| p.as_str()),
            http.status_code = Empty,
            otel.name = Empty,
            otel.kind = "server",
            otel.status_code = Empty,
            trace_id = Empty,
            request_id = request_id.map(field::display),
            exception.message = Empty,
            exception.details = Empty,
        )
    }

    fn on_request_end<B: MessageBody>(span: Span, outcome: &Result<ServiceResponse<B>, actix_web::Error>) {
        // An `Err` (no middleware here returns one) keeps no request: the route stays empty.
        if let Ok(res) = outcome {
            let req = res.request();
            let route = req.match_pattern();
            let route = route.as_deref().unwrap_or(NO_ROUTE);
            span.record("http.route", field::display(route));
            span.record("otel.name", field::display(format_args!("{} {route}", req.method())));
        }
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

/// The HTTP version as `root_span!` spells it.
fn flavor(version: Version) -> Cow<'static, str> {
    match version {
        Version::HTTP_09 => "0.9".into(),
        Version::HTTP_10 => "1.0".into(),
        Version::HTTP_11 => "1.1".into(),
        Version::HTTP_2 => "2.0".into(),
        Version::HTTP_3 => "3.0".into(),
        other => format!("{other:?}").into(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_dead_sink_reports_success_and_is_not_retried() {
        let mut w = ForgivingStderr { dead: true };
        assert_eq!(w.write(b"line\n").unwrap_or(0), 5);
        assert!(w.flush().is_ok());
    }
}
