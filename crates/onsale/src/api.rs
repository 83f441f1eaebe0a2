//! The service as a buyer and an operator meet it: one `reqwest` client shared by every task,
//! a bound on the requests in flight, and every answer measured and judged in [`Stats`].
//!
//! A buyer's request future is boxed where it is awaited ([`Api::send`] returns a boxed
//! future), so a waiting buyer's task stays small: the large state of a request in flight
//! exists only while it is in flight.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::{Duration, Instant};

use reqwest::{Client, Method};
use serde_json::Value;
use tokio::sync::Semaphore;

use crate::stats::{Stats, Step, Verdict};

/// One answer: its status (0 when the request failed in transport), its problem `code` (`""`
/// for none; `TIMEOUT`, `CONNECT` or `TRANSPORT` for a transport failure), its JSON body
/// (`Null` when none), the `Retry-After` it asked for, and the verdict.
#[derive(Debug)]
pub struct Answer {
    /// HTTP status, 0 for a transport failure or a timeout.
    pub status: u16,
    /// The problem body's `code`, or `""`.
    pub code: String,
    /// The JSON body, `Null` when there was none or it was not JSON.
    pub body: Value,
    /// Seconds of `Retry-After`, when given.
    pub retry_after: Option<u64>,
    /// How the answer is judged.
    pub verdict: Verdict,
}

impl Answer {
    /// 503 or a transport failure: the request may be retried (with its idempotency key).
    pub fn retryable(&self) -> bool {
        matches!(self.status, 0 | 503)
    }

    /// How long to wait before retrying.
    pub fn backoff(&self) -> Duration {
        Duration::from_millis(self.retry_after.map_or(500, |s| s.clamp(1, 5) * 1000))
    }
}

/// The `code` a transport failure is counted under.
fn transport(e: &reqwest::Error) -> &'static str {
    if e.is_timeout() {
        "TIMEOUT"
    } else if e.is_connect() {
        "CONNECT"
    } else {
        "TRANSPORT"
    }
}

/// A boxed request future, see the module doc.
pub type Pending<'a> = Pin<Box<dyn Future<Output = Answer> + Send + 'a>>;

/// The client side of the service.
#[derive(Debug, Clone)]
pub struct Api {
    client: Client,
    base: String,
    admin_token: String,
    stats: Arc<Stats>,
    inflight: Arc<Semaphore>,
}

/// One request to make.
#[derive(Debug)]
pub struct Req<'a> {
    /// The step it is measured under.
    pub step: Step,
    /// Method.
    pub method: Method,
    /// Path below the base URL.
    pub path: String,
    /// Bearer token, if any.
    pub bearer: Option<&'a str>,
    /// JSON body, if any.
    pub body: Option<Value>,
    /// `Idempotency-Key`, if any.
    pub key: Option<&'a str>,
}

impl Api {
    /// A client of `base` (no trailing slash needed) with at most `max_inflight` requests at once.
    pub fn new(
        base: &str,
        admin_token: &str,
        stats: Arc<Stats>,
        max_inflight: usize,
        timeout: Duration,
    ) -> anyhow::Result<Self> {
        let client = Client::builder()
            .timeout(timeout)
            .connect_timeout(Duration::from_secs(3))
            .pool_max_idle_per_host(max_inflight)
            // Below actix-web's keep-alive (5 s): a pooled connection the server is closing
            // would fail a request that never reached it.
            .pool_idle_timeout(Duration::from_secs(3))
            .tcp_nodelay(true)
            .build()?;
        Ok(Api {
            client,
            base: base.trim_end_matches('/').to_owned(),
            admin_token: admin_token.to_owned(),
            stats,
            inflight: Arc::new(Semaphore::new(max_inflight.max(1))),
        })
    }

    /// The shared measurements.
    pub fn stats(&self) -> &Arc<Stats> {
        &self.stats
    }

    /// Sends a buyer's request and measures it (the wait for a slot in flight is not measured).
    pub fn send<'a>(&'a self, req: Req<'a>) -> Pending<'a> {
        Box::pin(async move {
            let _permit = self.inflight.acquire().await.ok();
            let mut rb = self.client.request(req.method, format!("{}{}", self.base, req.path));
            if let Some(b) = req.bearer {
                rb = rb.bearer_auth(b);
            }
            if let Some(k) = req.key {
                rb = rb.header("Idempotency-Key", k);
            }
            if let Some(body) = &req.body {
                rb = rb.json(body);
            }
            let began = Instant::now();
            let (status, retry_after, body, failure) = match rb.send().await {
                Ok(resp) => {
                    let status = resp.status().as_u16();
                    let retry_after = resp
                        .headers()
                        .get("retry-after")
                        .and_then(|v| v.to_str().ok())
                        .and_then(|v| v.trim().parse().ok());
                    match resp.bytes().await {
                        Ok(bytes) => (status, retry_after, serde_json::from_slice(&bytes).unwrap_or(Value::Null), None),
                        Err(e) => (0, None, Value::Null, Some(transport(&e))),
                    }
                }
                Err(e) => (0, None, Value::Null, Some(transport(&e))),
            };
            let took = began.elapsed();
            let code = failure.unwrap_or_else(|| body.get("code").and_then(Value::as_str).unwrap_or("")).to_owned();
            let verdict = self.stats.answer(req.step, status, &code, took);
            Answer { status, code, body, retry_after, verdict }
        })
    }

    /// An operator call (`Authorization: Bearer <ADMIN_TOKEN>`), not counted among the buyers'
    /// answers; fails on a transport error or a status other than 2xx.
    pub async fn admin(&self, method: Method, path: &str, body: Option<Value>) -> anyhow::Result<Value> {
        let mut rb =
            self.client.request(method.clone(), format!("{}{}", self.base, path)).bearer_auth(&self.admin_token);
        if let Some(b) = &body {
            rb = rb.json(b);
        }
        let resp = rb.send().await?;
        let status = resp.status();
        let text = resp.text().await?;
        anyhow::ensure!(status.is_success(), "{method} {path}: {status} {text}");
        Ok(serde_json::from_str(&text).unwrap_or(Value::Null))
    }
}
