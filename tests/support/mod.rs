//! Starts the real `concert` binary on its own PostgreSQL database and a free loopback port,
//! and drops both when the test ends.

#![allow(
    dead_code,
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    reason = "test support: a failed expectation should panic"
)]

use std::net::TcpListener;
use std::path::PathBuf;
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use diesel::{Connection, PgConnection, RunQueryDsl};
use reqwest::blocking::{Client, Response};
use serde_json::{json, Value};
use uuid::Uuid;

pub const PG_SERVER: &str = "postgres://postgres@127.0.0.1:5432";

/// The `concert` binary cargo built next to this test (`target/<profile>/concert`).
pub fn concert_bin() -> PathBuf {
    if let Ok(p) = std::env::var("CONCERT_BIN") {
        return PathBuf::from(p);
    }
    let exe = std::env::current_exe().expect("test exe path");
    let profile_dir = exe.parent().and_then(|deps| deps.parent()).expect("target/<profile>");
    let bin = profile_dir.join("concert");
    // `cargo test -p concert-e2e` does not rebuild another package's binary, so make sure it
    // is current (a no-op when it is; cargo releases its lock before running test binaries).
    static BUILD: std::sync::Once = std::sync::Once::new();
    BUILD.call_once(|| {
        let mut cmd = Command::new(env!("CARGO"));
        cmd.args(["build", "--quiet", "-p", "app", "--bin", "concert"]);
        if profile_dir.file_name().is_some_and(|p| p == "release") {
            cmd.arg("--release");
        }
        let status = cmd.status().expect("cargo build concert");
        assert!(status.success(), "building the concert binary failed");
    });
    bin
}

/// Runs a one-shot `concert` command (`seed-demo`, `check-invariants`, ...) on a database.
pub fn run_command(command: &str, db_url: &str) -> Output {
    Command::new(concert_bin())
        .arg(command)
        .env("DATABASE_URL", db_url)
        .env("RUST_LOG", "warn")
        .output()
        .unwrap_or_else(|e| panic!("run concert {command}: {e}"))
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0").expect("bind :0").local_addr().expect("addr").port()
}

fn admin() -> PgConnection {
    PgConnection::establish(&format!("{PG_SERVER}/postgres")).expect("connect to the postgres database")
}

/// Drops its database when dropped, including when a test panics half-way through start-up.
pub struct Database(pub String);

impl Database {
    /// A fresh name; nothing is created until a command creates it.
    pub fn fresh() -> Self {
        Self(format!("concert_e2e_{}", Uuid::new_v4().simple()))
    }

    pub fn url(&self) -> String {
        format!("{PG_SERVER}/{}", self.0)
    }
}

impl Drop for Database {
    fn drop(&mut self) {
        let mut conn = admin();
        let _ = diesel::sql_query(format!("DROP DATABASE IF EXISTS {} WITH (FORCE)", self.0)).execute(&mut conn);
    }
}

/// A running `concert serve` with its own database.
pub struct Server {
    child: Child,
    pub base: String,
    pub db_url: String,
    // Declared after `child`: dropped after the server is stopped.
    _db: Database,
    pub http: Client,
}

impl Server {
    /// Seeds the demo catalogue into a fresh database, then serves it with `env` on top of
    /// test-friendly defaults (fast scheduler checks).
    pub fn start(env: &[(&str, &str)]) -> Self {
        let db = Database::fresh();
        let db_url = db.url();
        let port = free_port();
        let seed = run_command("seed-demo", &db_url);
        assert!(
            seed.status.success(),
            "seed-demo failed ({}): {}{}",
            seed.status,
            String::from_utf8_lossy(&seed.stdout),
            String::from_utf8_lossy(&seed.stderr)
        );
        let mut cmd = Command::new(concert_bin());
        cmd.arg("serve")
            .env("DATABASE_URL", &db_url)
            .env("BIND_ADDR", format!("127.0.0.1:{port}"))
            .env("SCHEDULER_CHECK_MILLIS", "100")
            .env("QUEUE_ADMIT_INTERVAL_SECS", "1")
            .env("RUST_LOG", "warn")
            .stdout(Stdio::null())
            .stderr(Stdio::inherit());
        for (k, v) in env {
            cmd.env(k, v);
        }
        let child = cmd.spawn().expect("spawn concert serve");
        let server = Self {
            child,
            base: format!("http://127.0.0.1:{port}"),
            db_url,
            _db: db,
            http: Client::builder().timeout(Duration::from_secs(30)).build().expect("http client"),
        };
        server.wait_ready();
        server
    }

    fn wait_ready(&self) {
        let deadline = Instant::now() + Duration::from_secs(60);
        while Instant::now() < deadline {
            if let Ok(r) = self.http.get(self.url("/health/ready")).send() {
                if r.status().is_success() {
                    return;
                }
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        panic!("server did not become ready");
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    pub fn get(&self, path: &str, token: Option<&str>) -> (u16, Value) {
        let mut req = self.http.get(self.url(path));
        if let Some(t) = token {
            req = req.bearer_auth(t);
        }
        read(req.send().expect("GET"))
    }

    pub fn post(&self, path: &str, token: Option<&str>, body: Value) -> (u16, Value) {
        let mut req = self.http.post(self.url(path)).json(&body);
        if let Some(t) = token {
            req = req.bearer_auth(t);
        }
        read(req.send().expect("POST"))
    }

    /// Issues a token for a new user (201) without waiting for admission.
    pub fn issue_token(&self) -> (String, String) {
        let user = Uuid::new_v4().to_string();
        let (status, body) = self.post("/queue/tokens", None, json!({ "userId": user }));
        assert_eq!(status, 201, "{body}");
        (user, body["token"].as_str().expect("token").to_owned())
    }

    /// Issues a token for a new user and waits until the scheduler admits it.
    pub fn active_user(&self) -> (String, String) {
        let (user, token) = self.issue_token();
        self.wait_active(&token);
        (user, token)
    }

    pub fn wait_active(&self, token: &str) {
        self.wait_for(Duration::from_secs(20), || self.get("/queue/token", Some(token)).1["status"] == "ACTIVE");
    }

    /// Polls `cond` every 50 ms until it holds; panics after `limit`.
    pub fn wait_for(&self, limit: Duration, mut cond: impl FnMut() -> bool) {
        let deadline = Instant::now() + limit;
        while Instant::now() < deadline {
            if cond() {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        panic!("condition not reached within {limit:?}");
    }

    /// The first bookable schedule of the first concert and its seats.
    pub fn first_schedule(&self, token: &str) -> (String, Vec<Value>) {
        let (s, concerts) = self.get("/concerts", Some(token));
        assert_eq!(s, 200, "{concerts}");
        let concert = concerts[0]["id"].as_str().expect("concert id").to_owned();
        let (s, schedules) = self.get(&format!("/concerts/{concert}/schedules"), Some(token));
        assert_eq!(s, 200, "{schedules}");
        let schedule = schedules[0]["id"].as_str().expect("schedule id").to_owned();
        let (s, seats) = self.get(&format!("/schedules/{schedule}/seats"), Some(token));
        assert_eq!(s, 200, "{seats}");
        (schedule, seats.as_array().expect("seat list").clone())
    }

    pub fn balance(&self, user: &str) -> i64 {
        let (s, b) = self.get(&format!("/users/{user}/balance"), None);
        assert_eq!(s, 200, "{b}");
        b["balance"].as_i64().expect("balance")
    }

    /// Runs `concert check-invariants` on this server's database and asserts it passes.
    pub fn assert_invariants(&self) {
        let out = run_command("check-invariants", &self.db_url);
        assert!(
            out.status.success(),
            "invariants violated:\n{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }

    /// Counts rows with a SQL query on this server's database.
    pub fn count(&self, sql: &str) -> i64 {
        #[derive(diesel::QueryableByName)]
        struct N {
            #[diesel(sql_type = diesel::sql_types::BigInt)]
            n: i64,
        }
        let mut conn = PgConnection::establish(&self.db_url).expect("connect to the test database");
        diesel::sql_query(sql).get_result::<N>(&mut conn).expect("count query").n
    }
}

pub fn read(r: Response) -> (u16, Value) {
    let status = r.status().as_u16();
    let text = r.text().unwrap_or_default();
    (status, serde_json::from_str(&text).unwrap_or(Value::String(text)))
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = Command::new("kill").args(["-TERM", &self.child.id().to_string()]).status();
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                break;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Server {
    /// A new token for an existing user, waited until ACTIVE.
    pub fn active_user_for(&self, user: &str) -> (String, String) {
        let (status, body) = self.post("/queue/tokens", None, json!({ "userId": user }));
        assert!(status == 201 || status == 200, "{body}");
        let token = body["token"].as_str().expect("token").to_owned();
        self.wait_active(&token);
        (user.to_owned(), token)
    }
}
