//! What every fault test needs beyond `tests/support` (the binary, databases, private servers):
//! a `concert serve` that can be killed and started again (`procs`), an HTTP client that
//! records what each request was answered (or that it was not), randomness, and SQL reads of
//! the service's tables for the audits.

pub mod procs;

use std::cell::Cell;
use std::time::{Duration, Instant};

use diesel::{PgConnection, RunQueryDsl as _};
use reqwest::blocking::Client;
use reqwest::Method;
use serde_json::{json, Value};
use uuid::Uuid;

use crate::support::ADMIN;

// ---- randomness ------------------------------------------------------------------------------

/// A random lower-case hex string of `bytes` bytes (at most 16: one version-4 UUID's).
pub fn rand_hex(bytes: usize) -> String {
    let hex = Uuid::new_v4().simple().to_string();
    hex[..2 * bytes.min(16)].to_owned()
}

/// A small, fast generator for load decisions (xorshift64*), seeded from the OS.
#[derive(Debug)]
pub struct Rng(Cell<u64>);

impl Rng {
    pub fn new() -> Self {
        let (high, low) = Uuid::new_v4().as_u64_pair();
        Self(Cell::new((high ^ low) | 1))
    }

    pub fn next(&self) -> u64 {
        let mut x = self.0.get();
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.0.set(x);
        x.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    /// Uniform in `lo..hi`.
    pub fn range(&self, lo: i64, hi: i64) -> i64 {
        let span = u64::try_from(hi - lo).expect("hi > lo");
        lo + i64::try_from(self.next() % span).expect("fits")
    }

    /// True with probability `p`.
    pub fn chance(&self, p: f64) -> bool {
        #[allow(clippy::cast_precision_loss, reason = "a probability, not an amount")]
        let x = (self.next() >> 11) as f64 / (1_u64 << 53) as f64;
        x < p
    }
}

// ---- SQL reads -------------------------------------------------------------------------------

/// Rows of text columns, read as `Vec<Vec<String>>` (NULL as the empty string), so that the
/// audits need no schema types: every query casts its columns to text.
pub fn rows(conn: &mut PgConnection, sql: &str, columns: usize) -> Vec<Vec<String>> {
    #[derive(diesel::QueryableByName)]
    struct Row {
        #[diesel(sql_type = diesel::sql_types::Text)]
        r: String,
    }
    // One text column per row: the columns joined with a separator no value contains.
    let cols: Vec<String> = (1..=columns).map(|i| format!("COALESCE(q.c{i}::text, '')")).collect();
    let names: Vec<String> = (1..=columns).map(|i| format!("c{i}")).collect();
    let wrapped =
        format!("SELECT concat_ws(E'\\x1f', {}) AS r FROM ({sql}) AS q({})", cols.join(", "), names.join(", "));
    diesel::sql_query(&wrapped)
        .load::<Row>(conn)
        .unwrap_or_else(|e| panic!("{sql}: {e}"))
        .into_iter()
        .map(|row| row.r.split('\u{1f}').map(str::to_owned).collect())
        .collect()
}

// ---- HTTP ------------------------------------------------------------------------------------

/// What one request got: a status and body, or nothing (the connection failed or timed out).
#[derive(Debug, Clone)]
pub struct Answer {
    pub status: Option<u16>,
    pub body: Value,
    pub replayed: bool,
    pub elapsed: Duration,
    pub error: Option<String>,
}

impl Answer {
    pub fn is(&self, status: u16) -> bool {
        self.status == Some(status)
    }

    pub fn ok(&self) -> bool {
        self.status.is_some_and(|s| (200..300).contains(&s))
    }

    pub fn code(&self) -> &str {
        self.body["code"].as_str().unwrap_or("")
    }
}

/// One request to make: method, path, bearer, `Idempotency-Key`, JSON body.
#[derive(Debug, Clone)]
pub struct Req {
    pub method: Method,
    pub path: String,
    pub bearer: Option<String>,
    pub key: Option<String>,
    pub body: Option<Value>,
}

impl Req {
    pub fn get(path: impl Into<String>) -> Self {
        Self { method: Method::GET, path: path.into(), bearer: None, key: None, body: None }
    }

    pub fn post(path: impl Into<String>, body: Value) -> Self {
        Self { method: Method::POST, path: path.into(), bearer: None, key: None, body: Some(body) }
    }

    pub fn bearer(mut self, token: &str) -> Self {
        self.bearer = Some(token.to_owned());
        self
    }

    pub fn key(mut self, key: &str) -> Self {
        self.key = Some(key.to_owned());
        self
    }
}

/// A blocking HTTP client of one server. The base can be changed (a restarted server listens
/// on a new port).
pub struct Api {
    pub base: std::sync::RwLock<String>,
    client: Client,
}

impl Api {
    /// `timeout` bounds every request: a request still unanswered then counts as lost (for the
    /// outage tests, as a hang).
    pub fn new(base: &str, timeout: Duration) -> Self {
        let client = Client::builder()
            .timeout(timeout)
            .connect_timeout(Duration::from_secs(2))
            .pool_max_idle_per_host(64)
            .build()
            .expect("http client");
        Self { base: std::sync::RwLock::new(base.to_owned()), client }
    }

    pub fn set_base(&self, base: &str) {
        *self.base.write().expect("lock") = base.to_owned();
    }

    pub fn send(&self, req: &Req) -> Answer {
        let base = self.base.read().expect("lock").clone();
        let mut r = self.client.request(req.method.clone(), format!("{base}{}", req.path));
        if let Some(t) = &req.bearer {
            r = r.bearer_auth(t);
        }
        if let Some(k) = &req.key {
            r = r.header("Idempotency-Key", k);
        }
        if let Some(b) = &req.body {
            r = r.json(b);
        }
        let start = Instant::now();
        match r.send() {
            Ok(resp) => {
                let status = resp.status().as_u16();
                let replayed = resp.headers().get("idempotent-replayed").is_some_and(|v| v == "true");
                let text = resp.text();
                let elapsed = start.elapsed();
                match text {
                    Ok(text) => Answer {
                        status: Some(status),
                        body: serde_json::from_str(&text).unwrap_or(Value::String(text)),
                        replayed,
                        elapsed,
                        error: None,
                    },
                    // The status line came but the body did not: the answer is lost.
                    Err(e) => Answer { status: None, body: Value::Null, replayed, elapsed, error: Some(e.to_string()) },
                }
            }
            Err(e) => Answer {
                status: None,
                body: Value::Null,
                replayed: false,
                elapsed: start.elapsed(),
                error: Some(format!("{e:?}")),
            },
        }
    }

    /// Sends until answered 2xx, up to `limit`; panics with the last answer otherwise.
    pub fn must(&self, req: &Req, limit: Duration) -> Value {
        let deadline = Instant::now() + limit;
        loop {
            let a = self.send(req);
            if a.ok() {
                return a.body;
            }
            assert!(Instant::now() < deadline, "{} {} kept failing: {a:?}", req.method, req.path);
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// Creates a concert with one schedule of `seats` seats (prices 1,000..=3,000 won) through
    /// the operator API and returns the schedule id and the seats `(id, price)`.
    pub fn create_schedule(&self, seats: u32) -> (String, Vec<(String, i64)>) {
        let seat_list: Vec<Value> =
            (1..=seats).map(|n| json!({ "number": n, "price": 1_000 + i64::from(n % 3) * 1_000 })).collect();
        let body = json!({
            "title": format!("Fault drill {}", rand_hex(4)),
            "schedules": [{ "startsAt": "2099-06-01T19:00:00Z", "seats": seat_list }],
        });
        let created = self.must(&Req::post("/admin/concerts", body).bearer(ADMIN), Duration::from_secs(30));
        let schedule = created["schedules"][0]["id"].as_str().expect("schedule id").to_owned();
        let token = self.active_token(&Uuid::new_v4().to_string(), Duration::from_secs(30));
        let seats =
            self.must(&Req::get(format!("/schedules/{schedule}/seats")).bearer(&token), Duration::from_secs(30));
        let seats = seats
            .as_array()
            .expect("seat list")
            .iter()
            .map(|s| (s["id"].as_str().expect("seat id").to_owned(), s["price"].as_i64().expect("price")))
            .collect();
        (schedule, seats)
    }

    /// A token of `user`, waited until ACTIVE (panics after `limit`).
    pub fn active_token(&self, user: &str, limit: Duration) -> String {
        let issued = self.must(&Req::post("/queue/tokens", json!({ "userId": user })), limit);
        let token = issued["token"].as_str().expect("token").to_owned();
        let deadline = Instant::now() + limit;
        loop {
            let a = self.send(&Req::get("/queue/token").bearer(&token));
            if a.ok() && a.body["status"] == "ACTIVE" {
                return token;
            }
            assert!(Instant::now() < deadline, "token not ACTIVE within {limit:?}: {a:?}");
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

/// The environment of a test server: the database, the operator token, admission every
/// second for everyone waiting, long holds and tokens, and `extra` on top.
pub fn server_env<'a>(db_url: &'a str, extra: &[(&'a str, &'a str)]) -> Vec<(&'a str, &'a str)> {
    let mut env = vec![
        ("DATABASE_URL", db_url),
        ("ADMIN_TOKEN", ADMIN),
        ("QUEUE_ADMIT_INTERVAL_SECS", "1"),
        ("QUEUE_ADMIT_BATCH", "10000"),
        ("QUEUE_ACTIVE_TTL_SECS", "3600"),
        ("SCHEDULER_CHECK_MILLIS", "100"),
        ("SEAT_HOLD_SECS", "3600"),
        ("MAX_HOLDS_PER_USER", "1000"),
        ("HTTP_WORKERS", "2"),
    ];
    env.extend_from_slice(extra);
    env
}
