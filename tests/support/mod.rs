//! Starts the real `concert` binary as a client would meet it, and cleans up after it. Shared by
//! the black-box tests (`tests/e2e.rs`) and the fault tests (`tests/faults/`, which include it
//! with `#[path]`).
//!
//! A [`Deployment`] is what several instances share: a fresh PostgreSQL database (created,
//! seeded with the demo catalogue, dropped with the deployment) and, for `QUEUE_STORE=redis`, a
//! random Redis key prefix (its keys deleted with the deployment). A [`Server`] is one
//! `concert serve` process of a deployment on a free loopback port (under `faketime` when a test
//! asks: the signals then go to the server that `faketime` forks, and `faketime` exits with its
//! status), logging to a file whose tail is printed when a test fails. Servers stay in the test's
//! process group, so a Ctrl-C on `cargo test` stops them too. Everything is undone by `Drop`, including when
//! a test panics half-way: processes first, then the Redis keys and the database.
//!
//! # Layout
//! - this file: [`Queue`], [`Deployment`], [`Launch`], [`Server`], [`Database`], one-shot
//!   commands, waits, signals.
//! - [`private`]: a PostgreSQL cluster and a `redis-server` of a test's own, on free ports, for
//!   the outage and fault tests (never the machine's own servers): started, crashed, frozen.

#![allow(
    dead_code,
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    reason = "test support: a failed expectation should panic"
)]

pub mod private;

use std::collections::BTreeMap;
use std::fs::File;
use std::io::Read as _;
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Output, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use diesel::{Connection, PgConnection, RunQueryDsl};
use reqwest::blocking::{Client, RequestBuilder, Response};
use reqwest::header::HeaderMap;
use serde_json::{json, Value};
use uuid::Uuid;

/// The machine's PostgreSQL (tests only create and drop their own databases on it).
pub const PG_SERVER: &str = "postgres://postgres@127.0.0.1:5432";

/// The machine's Redis (never flushed: tests only touch their own key prefix).
pub const REDIS_URL: &str = "redis://127.0.0.1:6379";

/// The operator secret the tests configure (`ADMIN_TOKEN`; at least 16 visible characters).
pub const ADMIN: &str = "e2e-operator-secret-4f1d9c07";

/// Every variable the binary reads. Each child starts without them, so that a developer's
/// `DATABASE_URL` or `ADMIN_TOKEN` never leaks into a test; the test sets what it means.
const BINARY_VARS: &[&str] = &[
    "STORE",
    "QUEUE_STORE",
    "DATABASE_URL",
    "DATABASE_POOL_SIZE",
    "STORE_CALLS_AT_ONCE",
    "DATABASE_CONNECT_TIMEOUT_MILLIS",
    "DATABASE_LOCK_TIMEOUT_MILLIS",
    "DATABASE_STATEMENT_TIMEOUT_MILLIS",
    "REDIS_URL",
    "REDIS_KEY_PREFIX",
    "BIND_ADDR",
    "QUEUE_ADMIT_INTERVAL_SECS",
    "QUEUE_ADMIT_BATCH",
    "QUEUE_ACTIVE_TTL_SECS",
    "QUEUE_MAX_ACTIVE",
    "QUEUE_POLL_CACHE_MILLIS",
    "QUEUE_POLL_CACHE_CAPACITY",
    "SEAT_HOLD_SECS",
    "MAX_HOLDS_PER_USER",
    "ISSUE_RATE_PER_MIN",
    "TRUSTED_PROXIES",
    "IDEMPOTENCY_TTL_SECS",
    "ADMIN_TOKEN",
    "SCHEDULER_ENABLED",
    "SCHEDULER_CHECK_MILLIS",
    "HTTP_WORKERS",
    "AUTH_ISSUER",
    "AUTH_AUDIENCE",
    "AUTH_JWKS_URL",
    "AUTH_JWKS_REFRESH_SECS",
    "AUTH_USER_CLAIM",
    "AUTH_PAGE_CLIENT_ID",
    "LOG_FORMAT",
    "RUST_LOG",
    "FAKETIME",
    "LD_PRELOAD",
];

/// What a test instance runs with unless the test says otherwise: scheduler checks every
/// 100 ms and one admission per second, so admission is observed in about a second; a small
/// pool, so parallel tests with two instances each stay far inside the server's 100
/// connections.
const TEST_DEFAULTS: &[(&str, &str)] = &[
    ("SCHEDULER_CHECK_MILLIS", "100"),
    ("QUEUE_ADMIT_INTERVAL_SECS", "1"),
    ("DATABASE_POOL_SIZE", "5"),
    ("RUST_LOG", "info"),
];

/// Where the waiting queue lives (`QUEUE_STORE`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Queue {
    Postgres,
    Redis,
    /// `QUEUE_STORE=redis` on the tests' own Redis Cluster (3 masters, 3 replicas), started
    /// once per test binary (`adapters_redis::testing::shared`).
    RedisCluster,
}

impl Queue {
    /// Whether the line is in Redis (one server or a cluster).
    pub fn is_redis(self) -> bool {
        matches!(self, Self::Redis | Self::RedisCluster)
    }

    /// Where this queue's Redis is: the machine's, or the tests' cluster.
    fn redis_url(self) -> String {
        match self {
            Self::RedisCluster => adapters_redis::testing::shared().url(),
            _ => REDIS_URL.to_owned(),
        }
    }
}

/// The `concert` binary cargo built next to this test (`target/<profile>/concert`), or
/// `CONCERT_BIN`.
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

/// A `concert` command with none of the binary's variables inherited.
fn concert_command() -> Command {
    let mut cmd = Command::new(concert_bin());
    for var in BINARY_VARS {
        cmd.env_remove(var);
    }
    cmd
}

/// Runs a one-shot `concert` command (`seed-demo`, `migrate`, `check-invariants`) on a
/// database and waits for it.
pub fn run_command(command: &str, db_url: &str) -> Output {
    run_command_within(command, db_url, Duration::from_secs(120))
}

/// Like [`run_command`], but kills the command and fails the test if it runs past `limit`.
pub fn run_command_within(command: &str, db_url: &str, limit: Duration) -> Output {
    let mut child = concert_command()
        .arg(command)
        .env("DATABASE_URL", db_url)
        .env("RUST_LOG", "warn")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("run concert {command}: {e}"));
    // Drained by threads, so a chatty command never blocks on a full pipe.
    let drain = |mut r: Box<dyn std::io::Read + Send>| {
        std::thread::spawn(move || {
            let mut buf = Vec::new();
            let _ = r.read_to_end(&mut buf);
            buf
        })
    };
    let out = drain(Box::new(child.stdout.take().unwrap()));
    let err = drain(Box::new(child.stderr.take().unwrap()));
    let deadline = Instant::now() + limit;
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        if Instant::now() >= deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("concert {command} still ran after {limit:?}");
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    Output { status, stdout: out.join().unwrap(), stderr: err.join().unwrap() }
}

/// Sends `signal` (`TERM`, `INT`, `KILL`, `STOP`, `CONT`) to one process id.
pub fn signal(pid: u32, signal: &str) {
    let _ = Command::new("kill").args([&format!("-{signal}"), &pid.to_string()]).stderr(Stdio::null()).status();
}

/// A loopback port nothing listens on right now.
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0").expect("bind :0").local_addr().expect("addr").port()
}

/// Polls `cond` every 50 ms until it holds; fails the test, naming `what`, after `limit`.
pub fn wait_for(what: &str, limit: Duration, mut cond: impl FnMut() -> bool) {
    let deadline = Instant::now() + limit;
    loop {
        if cond() {
            return;
        }
        assert!(Instant::now() < deadline, "not reached within {limit:?}: {what}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// One `i64` per row of `sql` (a column named `n`), on the database at `db_url`.
pub fn query_i64s(db_url: &str, sql: &str) -> Vec<i64> {
    #[derive(diesel::QueryableByName)]
    struct N {
        #[diesel(sql_type = diesel::sql_types::BigInt)]
        n: i64,
    }
    let mut conn = PgConnection::establish(db_url).expect("connect to the test database");
    diesel::sql_query(sql)
        .load::<N>(&mut conn)
        .unwrap_or_else(|e| panic!("{sql}: {e}"))
        .into_iter()
        .map(|r| r.n)
        .collect()
}

/// The single `i64` of `sql` (a column named `n`).
pub fn query_i64(db_url: &str, sql: &str) -> i64 {
    let rows = query_i64s(db_url, sql);
    assert_eq!(rows.len(), 1, "{sql} returned {rows:?}");
    rows[0]
}

/// Runs a statement on the database at `db_url`.
pub fn execute(db_url: &str, sql: &str) -> usize {
    let mut conn = PgConnection::establish(db_url).expect("connect to the test database");
    diesel::sql_query(sql).execute(&mut conn).unwrap_or_else(|e| panic!("{sql}: {e}"))
}

/// A directory under the system's temp directory, removed when dropped.
#[derive(Debug)]
pub struct TempDir(pub PathBuf);

impl TempDir {
    pub fn new(prefix: &str) -> Self {
        let path = std::env::temp_dir().join(format!("{prefix}-{}", Uuid::new_v4().simple()));
        std::fs::create_dir_all(&path).expect("create a temp dir");
        Self(path)
    }

    pub fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// A database of a test's own on a PostgreSQL server (the machine's, or a private cluster),
/// dropped (with its connections) when this is dropped, including when a test panics half-way
/// through start-up.
#[derive(Debug)]
pub struct Database {
    pub server: String,
    pub name: String,
}

impl Database {
    /// A fresh name on the machine's server; nothing is created until a command creates it.
    pub fn fresh() -> Self {
        Self::fresh_on(PG_SERVER)
    }

    /// A fresh name on `server` (`postgres://user@host:port`).
    pub fn fresh_on(server: &str) -> Self {
        Self { server: server.to_owned(), name: format!("concert_e2e_{}", Uuid::new_v4().simple()) }
    }

    pub fn url(&self) -> String {
        format!("{}/{}", self.server, self.name)
    }

    /// Creates and migrates the database and loads the demo catalogue (`concert seed-demo`).
    pub fn seed(&self) {
        let seed = run_command("seed-demo", &self.url());
        assert!(
            seed.status.success(),
            "seed-demo failed ({}): {}{}",
            seed.status,
            String::from_utf8_lossy(&seed.stdout),
            String::from_utf8_lossy(&seed.stderr)
        );
    }

    pub fn connect(&self) -> PgConnection {
        PgConnection::establish(&self.url()).expect("connect to the test database")
    }
}

impl Drop for Database {
    fn drop(&mut self) {
        // Bounded: a test that failed while its private cluster was frozen must still end.
        if let Ok(mut conn) = PgConnection::establish(&format!("{}/postgres?connect_timeout=5", self.server)) {
            let _ = diesel::sql_query(format!("DROP DATABASE IF EXISTS {} WITH (FORCE)", self.name)).execute(&mut conn);
        }
    }
}

/// A random Redis key prefix; its keys (`{prefix}:*`) are deleted when this is dropped.
#[derive(Debug)]
pub struct RedisNamespace {
    pub url: String,
    pub prefix: String,
}

impl RedisNamespace {
    pub fn on(url: &str) -> Self {
        Self { url: url.to_owned(), prefix: format!("e2e-{}", Uuid::new_v4().simple()) }
    }

    /// Every key of this namespace (`main`'s and every room's), by `SCAN` (never `KEYS` on a
    /// shared server; on a cluster, on every master).
    pub fn keys(&self) -> redis::RedisResult<Vec<String>> {
        let mut keys = Vec::new();
        for pattern in [format!("{{{}}}:*", self.prefix), format!("{{{}:*", self.prefix)] {
            keys.extend(adapters_redis::testing::scan(&self.url, &pattern)?.into_iter().map(|(key, _node)| key));
        }
        Ok(keys)
    }
}

impl Drop for RedisNamespace {
    fn drop(&mut self) {
        // A private server may be gone by now (outage tests): nothing to clean then.
        let Ok(keys) = self.keys() else { return };
        let Ok(mut con) = adapters_redis::testing::TestConnection::open(&self.url) else { return };
        // One key per DEL: on a cluster the keys of several rooms are in several slots.
        for key in keys {
            let _: Result<i64, _> = redis::cmd("DEL").arg(key).query(&mut con);
        }
    }
}

/// What the instances of one test share: the database and, with `QUEUE_STORE=redis`, a Redis
/// key prefix. Dropped once the test and every [`Server`] of it let go (servers hold an `Arc`),
/// so its processes always stop before their stores are removed.
#[derive(Debug)]
pub struct Deployment {
    pub queue: Queue,
    pub db_url: String,
    env: Vec<(String, String)>,
    // Dropped after the fields above, in this order: Redis keys, then the database.
    redis: Option<RedisNamespace>,
    db: Option<Database>,
}

impl Deployment {
    /// A fresh database on the machine's server, seeded with the demo catalogue, and for
    /// [`Queue::Redis`] a fresh prefix on the machine's Redis; `env` applies to every instance.
    pub fn new(queue: Queue, env: &[(&str, &str)]) -> Arc<Self> {
        Self::with_redis_at(queue, &queue.redis_url(), env)
    }

    /// As [`Deployment::new`], with Redis at `redis_url` (a private server).
    pub fn with_redis_at(queue: Queue, redis_url: &str, env: &[(&str, &str)]) -> Arc<Self> {
        let db = Database::fresh();
        db.seed();
        let redis = queue.is_redis().then(|| RedisNamespace::on(redis_url));
        Arc::new(Self { queue, db_url: db.url(), env: owned(env), redis, db: Some(db) })
    }

    /// A deployment on a database this value does not own (a private cluster, removed by its
    /// own guard), not created or seeded here.
    pub fn on_database(queue: Queue, db_url: &str, env: &[(&str, &str)]) -> Arc<Self> {
        let redis = queue.is_redis().then(|| RedisNamespace::on(&queue.redis_url()));
        Arc::new(Self { queue, db_url: db_url.to_owned(), env: owned(env), redis, db: None })
    }

    /// The variables every instance of this deployment gets.
    fn instance_env(&self) -> Vec<(String, String)> {
        let mut env = vec![("DATABASE_URL".to_owned(), self.db_url.clone())];
        match (&self.queue, &self.redis) {
            (Queue::Redis | Queue::RedisCluster, Some(ns)) => {
                env.push(("QUEUE_STORE".into(), "redis".into()));
                env.push(("REDIS_URL".into(), ns.url.clone()));
                env.push(("REDIS_KEY_PREFIX".into(), ns.prefix.clone()));
            }
            _ => env.push(("QUEUE_STORE".into(), "postgres".into())),
        }
        env.extend(self.env.iter().cloned());
        env
    }

    /// Starts an instance with `env` on top of the deployment's, and waits until it is ready.
    pub fn spawn(self: &Arc<Self>, env: &[(&str, &str)]) -> Server {
        let mut launch = Launch::new();
        for (k, v) in env {
            launch = launch.env(k, v);
        }
        self.launch(launch)
    }

    /// Starts an instance as `launch` says.
    pub fn launch(self: &Arc<Self>, launch: Launch) -> Server {
        Server::launch(Some(self.clone()), launch)
    }

    /// Starts one instance per entry of `envs` at the same time; returns them in that order.
    pub fn spawn_many(self: &Arc<Self>, envs: &[&[(&str, &str)]]) -> Vec<Server> {
        std::thread::scope(|scope| {
            let handles: Vec<_> = envs.iter().map(|env| scope.spawn(move || self.spawn(env))).collect();
            handles.into_iter().map(|h| h.join().unwrap_or_else(|e| std::panic::resume_unwind(e))).collect()
        })
    }

    /// Counts with a SQL query (`SELECT count(*) AS n ...`) on this deployment's database.
    pub fn count(&self, sql: &str) -> i64 {
        query_i64(&self.db_url, sql)
    }

    /// Runs `concert check-invariants` on this deployment's database and asserts it passes.
    pub fn assert_invariants(&self) {
        let out = run_command("check-invariants", &self.db_url);
        assert!(
            out.status.success(),
            "invariants violated:\n{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
}

fn owned(env: &[(&str, &str)]) -> Vec<(String, String)> {
    env.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned())).collect()
}

/// How to start one `concert serve`.
#[derive(Debug, Clone)]
pub struct Launch {
    env: Vec<(String, String)>,
    args: Vec<String>,
    faketime: Option<String>,
    defaults: bool,
    ready: bool,
}

impl Default for Launch {
    fn default() -> Self {
        Self::new()
    }
}

impl Launch {
    /// With the test defaults, waiting until `/health/ready` answers 200.
    pub fn new() -> Self {
        Self { env: Vec::new(), args: Vec::new(), faketime: None, defaults: true, ready: true }
    }

    /// Without the test defaults: the binary's own defaults, as `make run` starts it.
    pub fn bare() -> Self {
        Self { defaults: false, ..Self::new() }
    }

    pub fn env(mut self, key: &str, value: &str) -> Self {
        self.env.push((key.to_owned(), value.to_owned()));
        self
    }

    pub fn arg(mut self, arg: &str) -> Self {
        self.args.push(arg.to_owned());
        self
    }

    /// Runs the server under Debian's `faketime` with this offset (e.g. `+30s`).
    pub fn faketime(mut self, offset: &str) -> Self {
        self.faketime = Some(offset.to_owned());
        self
    }

    /// Waits only until `/health/live` answers (for a server whose stores are down).
    pub fn live_only(mut self) -> Self {
        self.ready = false;
        self
    }
}

/// One running `concert serve`, stopped when dropped.
pub struct Server {
    child: Child,
    /// The pid to signal: the child's, or under `faketime` the server it forked.
    target: u32,
    pub base: String,
    pub http: Client,
    admin: Option<String>,
    log: PathBuf,
    stopped: Option<ExitStatus>,
    // Dropped after the process is stopped: the log, then the stores.
    _logs: TempDir,
    pub deployment: Option<Arc<Deployment>>,
}

impl std::fmt::Debug for Server {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Server").field("pid", &self.child.id()).field("base", &self.base).finish_non_exhaustive()
    }
}

impl Server {
    /// A fresh deployment (database seeded with the demo catalogue; a Redis prefix for
    /// [`Queue::Redis`]) with one ready instance; `env` applies to it.
    pub fn start(queue: Queue, env: &[(&str, &str)]) -> Self {
        Deployment::new(queue, env).spawn(&[])
    }

    /// Starts `concert serve` (of `deployment`, if any) as `launch` says and waits for it.
    pub fn launch(deployment: Option<Arc<Deployment>>, launch: Launch) -> Self {
        let port = free_port();
        let mut env: BTreeMap<String, String> = BTreeMap::new();
        if launch.defaults {
            env.extend(TEST_DEFAULTS.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned())));
        } else {
            env.insert("RUST_LOG".into(), "info".into());
        }
        if let Some(d) = &deployment {
            env.extend(d.instance_env());
        }
        env.extend(launch.env.iter().cloned());
        env.insert("BIND_ADDR".into(), format!("127.0.0.1:{port}"));

        let logs = TempDir::new("concert-e2e-log");
        let log = logs.path().join("serve.log");
        let mut cmd = match &launch.faketime {
            Some(offset) => {
                let mut cmd = Command::new("faketime");
                cmd.arg("-f").arg(offset).arg(concert_bin());
                cmd
            }
            None => Command::new(concert_bin()),
        };
        for var in BINARY_VARS {
            cmd.env_remove(var);
        }
        cmd.arg("serve")
            .args(&launch.args)
            .envs(&env)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(File::create(&log).expect("create the log file"));
        let child = cmd.spawn().unwrap_or_else(|e| panic!("spawn concert serve ({cmd:?}): {e}"));
        let target = child.id();
        let mut server = Self {
            child,
            target,
            base: format!("http://127.0.0.1:{port}"),
            http: Client::builder().timeout(Duration::from_secs(30)).build().expect("http client"),
            admin: env.get("ADMIN_TOKEN").cloned(),
            log,
            stopped: None,
            _logs: logs,
            deployment,
        };
        if launch.faketime.is_some() {
            server.target = server.forked_child();
        }
        server.wait_up(if launch.ready { "/health/ready" } else { "/health/live" });
        server
    }

    /// The process a wrapper (`faketime`) forked to run the server.
    fn forked_child(&mut self) -> u32 {
        let pid = self.child.id();
        let mut found = None;
        wait_for("faketime forks the server", Duration::from_secs(10), || {
            let children = std::fs::read_to_string(format!("/proc/{pid}/task/{pid}/children")).unwrap_or_default();
            found = children.split_whitespace().next().and_then(|c| c.parse().ok());
            found.is_some() || !matches!(self.child.try_wait(), Ok(None))
        });
        found.unwrap_or_else(|| panic!("faketime exited without starting the server:\n{}", self.log_tail(40)))
    }

    fn wait_up(&mut self, path: &str) {
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            if let Ok(r) = self.http.get(self.url(path)).timeout(Duration::from_secs(5)).send() {
                if r.status().is_success() {
                    return;
                }
            }
            assert!(self.is_running(), "concert serve exited during start-up:\n{}", self.log_tail(40));
            assert!(Instant::now() < deadline, "{path} did not answer 200 within 60 s");
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    pub fn deployment(&self) -> &Arc<Deployment> {
        self.deployment.as_ref().expect("a server of a deployment")
    }

    /// Whether the process is still running (not exited, not stopped by the test).
    pub fn is_running(&mut self) -> bool {
        self.stopped.is_none() && matches!(self.child.try_wait(), Ok(None))
    }

    /// Sends `sig` (`TERM`, `INT`) to the server and waits until it has exited (and its
    /// wrapper with it); fails the test if it takes over 30 s.
    pub fn stop(&mut self, sig: &str) -> ExitStatus {
        if let Some(status) = self.stopped {
            return status;
        }
        signal(self.target, sig);
        let status = self.wait_exit(Duration::from_secs(30));
        match status {
            Some(status) => {
                self.stopped = Some(status);
                status
            }
            None => {
                self.kill();
                self.stopped = Some(ExitStatus::default());
                panic!("concert serve did not stop within 30 s of SIG{sig}\n{}", self.log_tail(40));
            }
        }
    }

    fn wait_exit(&mut self, limit: Duration) -> Option<ExitStatus> {
        let deadline = Instant::now() + limit;
        loop {
            if let Ok(Some(status)) = self.child.try_wait() {
                return Some(status);
            }
            if Instant::now() >= deadline {
                return None;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    fn kill(&mut self) {
        signal(self.target, "KILL");
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// The last `lines` lines of the server's log.
    pub fn log_tail(&self, lines: usize) -> String {
        let text = std::fs::read_to_string(&self.log).unwrap_or_default();
        let all: Vec<&str> = text.lines().collect();
        all[all.len().saturating_sub(lines)..].join("\n")
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    pub fn send(&self, req: RequestBuilder) -> (u16, Value) {
        read(req.send().unwrap_or_else(|e| panic!("request to {} failed: {e}", self.base)))
    }

    pub fn get(&self, path: &str, token: Option<&str>) -> (u16, Value) {
        let mut req = self.http.get(self.url(path));
        if let Some(t) = token {
            req = req.bearer_auth(t);
        }
        self.send(req)
    }

    pub fn post(&self, path: &str, token: Option<&str>, body: Value) -> (u16, Value) {
        let mut req = self.http.post(self.url(path)).json(&body);
        if let Some(t) = token {
            req = req.bearer_auth(t);
        }
        self.send(req)
    }

    /// A request with the operator's bearer (`ADMIN_TOKEN` of this instance, or [`ADMIN`]).
    pub fn admin(&self, method: reqwest::Method, path: &str) -> RequestBuilder {
        self.http.request(method, self.url(path)).bearer_auth(self.admin.as_deref().unwrap_or(ADMIN))
    }

    /// `GET /admin/queue`, asserted 200.
    pub fn queue_state(&self) -> Value {
        let (st, q) = self.send(self.admin(reqwest::Method::GET, "/admin/queue"));
        assert_eq!(st, 200, "{q}");
        q
    }

    /// `PATCH /admin/queue` with `body`, asserted 200; the state after it.
    pub fn patch_queue(&self, body: Value) -> Value {
        let (st, q) = self.send(self.admin(reqwest::Method::PATCH, "/admin/queue").json(&body));
        assert_eq!(st, 200, "PATCH /admin/queue {body}: {q}");
        q
    }

    /// `/metrics` (with the operator's bearer when this instance has one).
    pub fn metrics(&self) -> String {
        let mut req = self.http.get(self.url("/metrics"));
        if let Some(a) = &self.admin {
            req = req.bearer_auth(a);
        }
        let resp = req.send().expect("GET /metrics");
        assert_eq!(resp.status().as_u16(), 200);
        resp.text().expect("metrics text")
    }

    /// The value of one sample line of `/metrics` (`name{labels}` exactly as exposed), 0 when
    /// absent.
    pub fn metric(&self, series: &str) -> f64 {
        metric_in(&self.metrics(), series)
    }

    /// How many scheduler passes this instance has run (its tick-duration histogram's count).
    pub fn scheduler_passes(&self) -> f64 {
        self.metric("scheduler_tick_duration_seconds_count")
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

    /// A token for an existing user (new or the live one), waited until ACTIVE.
    pub fn active_user_for(&self, user: &str) -> (String, String) {
        let (status, body) = self.post("/queue/tokens", None, json!({ "userId": user }));
        assert!(status == 201 || status == 200, "{body}");
        let token = body["token"].as_str().expect("token").to_owned();
        self.wait_active(&token);
        (user.to_owned(), token)
    }

    pub fn wait_active(&self, token: &str) {
        wait_for("the token becomes ACTIVE", Duration::from_secs(20), || {
            self.get("/queue/token", Some(token)).1["status"] == "ACTIVE"
        });
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

    pub fn charge(&self, user: &str, amount: i64) -> i64 {
        let (s, b) = self.post(&format!("/users/{user}/balance/charge"), None, json!({ "amount": amount }));
        assert_eq!(s, 200, "{b}");
        b["balance"].as_i64().expect("balance")
    }

    /// Runs `concert check-invariants` on this server's database and asserts it passes.
    pub fn assert_invariants(&self) {
        self.deployment().assert_invariants();
    }

    /// Counts rows with a SQL query on this server's database.
    pub fn count(&self, sql: &str) -> i64 {
        self.deployment().count(sql)
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        if std::thread::panicking() {
            eprintln!("---- last log lines of concert serve at {} ----\n{}", self.base, self.log_tail(40));
        }
        if self.stopped.is_none() {
            signal(self.target, "TERM");
            if self.wait_exit(Duration::from_secs(15)).is_none() {
                self.kill();
            }
        }
    }
}

/// The value of `series` in a Prometheus text exposition, 0 when absent.
pub fn metric_in(text: &str, series: &str) -> f64 {
    text.lines()
        .filter(|l| !l.starts_with('#'))
        .find_map(|l| l.strip_prefix(series).and_then(|rest| rest.strip_prefix(' ')))
        .map_or(0.0, |v| v.trim().parse().expect("a metric value"))
}

/// A response's status and JSON body (or its text as a JSON string).
pub fn read(r: Response) -> (u16, Value) {
    let status = r.status().as_u16();
    let text = r.text().unwrap_or_default();
    (status, serde_json::from_str(&text).unwrap_or(Value::String(text)))
}

/// A response's status, headers and JSON body.
pub fn read_full(r: Response) -> (u16, HeaderMap, Value) {
    let headers = r.headers().clone();
    let (status, body) = read(r);
    (status, headers, body)
}

/// Waits until every server in `servers` has run `n` more scheduler passes than now: the
/// observed event behind "nothing happened" assertions (each pass could have admitted).
pub fn wait_scheduler_passes(servers: &[&Server], n: f64) {
    let start: Vec<f64> = servers.iter().map(|s| s.scheduler_passes()).collect();
    wait_for(&format!("{n} more scheduler passes on every instance"), Duration::from_secs(30), || {
        servers.iter().zip(&start).all(|(s, before)| s.scheduler_passes() >= before + n)
    });
}
