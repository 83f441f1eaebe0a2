//! Redis going away and coming back, on a private `redis-server` this test starts on a free
//! port (never the machine's own Redis): every call fails with `Unavailable` within the
//! contract's 5 s (never a hang), `ping` fails (readiness 503), and once the server is back the
//! same `RedisQueue` works again, without a restart. The private server runs without
//! persistence, so its data is gone after the restart: the line starts again at `seq` 1.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, reason = "tests")]

mod common;

use std::net::TcpListener;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration as StdDuration, Instant};

use adapters_redis::RedisQueue;
use common::Namespace;
use domain::clock::{Clock as _, ManualClock};
use domain::ids::UserId;
use domain::ports::{QueueStore, StoreError};
use domain::queue::{AdmissionOutcome, AdmissionPolicy, TokenValue};
use time::Duration;

/// The contract: a call that needs Redis answers within 5 s when Redis is unreachable.
const BUDGET: StdDuration = StdDuration::from_secs(5);

/// A `redis-server` of this test's own, killed (by its pid) when dropped.
struct PrivateRedis {
    port: u16,
    dir: std::path::PathBuf,
    child: Option<Child>,
}

impl PrivateRedis {
    fn start() -> Self {
        let port = TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        let dir = std::env::temp_dir().join(format!("redis-outage-{}", uuid::Uuid::new_v4().simple()));
        std::fs::create_dir_all(&dir).unwrap();
        let mut server = Self { port, dir, child: None };
        server.launch();
        server
    }

    fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    /// Starts the server on the port and waits until it answers a PING.
    fn launch(&mut self) {
        let child = Command::new("redis-server")
            .args(["--port", &self.port.to_string(), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"])
            .arg("--dir")
            .arg(&self.dir)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("redis-server must be installed");
        self.child = Some(child);
        let deadline = Instant::now() + StdDuration::from_secs(10);
        let client = redis::Client::open(self.url()).unwrap();
        loop {
            let pong = client
                .get_connection_with_timeout(StdDuration::from_millis(200))
                .and_then(|mut c| redis::cmd("PING").query::<String>(&mut c));
            if pong.is_ok() {
                return;
            }
            assert!(Instant::now() < deadline, "the private redis-server did not start");
            std::thread::sleep(StdDuration::from_millis(20));
        }
    }

    fn pid(&self) -> String {
        self.child.as_ref().unwrap().id().to_string()
    }

    fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Freezes the server (SIGSTOP): it accepts connections and reads nothing, like a hung host.
    fn freeze(&self) {
        assert!(Command::new("kill").args(["-STOP", &self.pid()]).status().unwrap().success());
    }

    fn thaw(&self) {
        assert!(Command::new("kill").args(["-CONT", &self.pid()]).status().unwrap().success());
    }
}

impl Drop for PrivateRedis {
    fn drop(&mut self) {
        if self.child.is_some() {
            self.thaw();
        }
        self.kill();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn user() -> UserId {
    UserId::from_uuid(uuid::Uuid::new_v4())
}

fn value() -> TokenValue {
    let mut bytes = [0_u8; 32];
    bytes[..16].copy_from_slice(uuid::Uuid::new_v4().as_bytes());
    bytes[16..].copy_from_slice(uuid::Uuid::new_v4().as_bytes());
    TokenValue::from_bytes(bytes)
}

fn policy() -> AdmissionPolicy {
    AdmissionPolicy {
        batch: 10,
        interval: Duration::seconds(60),
        active_ttl: Duration::seconds(600),
        max_active: None,
        abandon_after: None,
    }
}

/// A named queue call, its result reduced to success or the store's error.
type Call<'a> = (&'static str, Box<dyn Fn() -> Result<(), StoreError> + 'a>);

/// Runs every queue call and asserts each fails with `Unavailable` within the budget.
fn every_call_is_unavailable(queue: &RedisQueue, clock: &ManualClock, known: &TokenValue) {
    let calls: Vec<Call<'_>> = vec![
        ("ping", Box::new(|| queue.ping())),
        ("issue", Box::new(|| queue.issue(user(), value(), clock.now()).map(drop))),
        ("find", Box::new(|| queue.find(known).map(drop))),
        ("find_with_cursor", Box::new(|| queue.find_with_cursor(known).map(drop))),
        ("cursor", Box::new(|| queue.cursor().map(drop))),
        ("admit", Box::new(|| queue.admit(&policy()).map(drop))),
        ("expire_tokens", Box::new(|| queue.expire_tokens(100).map(drop))),
        ("use_up", Box::new(|| queue.use_up(known, clock.now()))),
        ("stats", Box::new(|| queue.stats().map(drop))),
    ];
    for (name, call) in calls {
        let started = Instant::now();
        let result = call();
        let took = started.elapsed();
        assert!(matches!(result, Err(StoreError::Unavailable(_))), "{name}: {result:?}");
        eprintln!("{name}: {took:?}");
        assert!(took < BUDGET, "{name} took {took:?}");
    }
}

/// Polls `ping` (as a readiness probe would) until it answers, within 10 s. Once a connection
/// attempt has failed, calls fail at once until the pool's next attempt (r2d2 retries about
/// every second) or a probe call succeeds, so readiness comes back within about a second.
fn wait_until_ready(queue: &RedisQueue) {
    let deadline = Instant::now() + StdDuration::from_secs(10);
    while let Err(e) = queue.ping() {
        assert!(matches!(e, StoreError::Unavailable(_)), "{e:?}");
        assert!(Instant::now() < deadline, "the queue did not recover: {e}");
        std::thread::sleep(StdDuration::from_millis(20));
    }
}

#[test]
fn a_redis_outage_fails_calls_fast_and_the_same_queue_recovers_when_redis_returns() {
    let mut server = PrivateRedis::start();
    let ns = Namespace::on(&server.url());
    let clock = ManualClock::at_epoch();
    let queue = ns.queue(Arc::new(clock.clone()));

    let before = queue.issue(user(), value(), clock.now()).unwrap().token;
    assert_eq!(queue.admit(&policy()).unwrap(), AdmissionOutcome::Admitted(1));
    queue.ping().unwrap();

    server.kill();
    every_call_is_unavailable(&queue, &clock, &before.value);

    server.launch();
    wait_until_ready(&queue);
    // The server restarted empty: the old token is unknown, the line starts again, and the
    // scripts (no longer cached by Redis) are loaded again on first use.
    assert_eq!(queue.find(&before.value).unwrap(), None);
    let after = queue.issue(user(), value(), clock.now()).unwrap();
    assert!(after.created);
    assert_eq!(after.token.seq, 1);
    assert_eq!(queue.admit(&policy()).unwrap(), AdmissionOutcome::Admitted(1));
}

#[test]
fn a_quick_restart_costs_reads_nothing_and_writes_at_most_one_failure() {
    let mut server = PrivateRedis::start();
    let ns = Namespace::on(&server.url());
    let clock = ManualClock::at_epoch();
    let queue = ns.queue(Arc::new(clock.clone()));
    // Fill the pool with a few connections that the restart will kill.
    std::thread::scope(|s| {
        for _ in 0..4 {
            s.spawn(|| queue.issue(user(), value(), clock.now()).unwrap());
        }
    });

    server.kill();
    server.launch();

    // Reads retry once on a fresh connection when the pooled one turns out dead.
    assert_eq!(queue.cursor().unwrap().admitted_through, 0);
    queue.ping().unwrap();
    // A write is never retried (its reply may be lost after it ran); the first failure
    // retires every pooled connection, so at most one write fails.
    let attempts: Vec<_> = (0..2).map(|_| queue.issue(user(), value(), clock.now())).collect();
    assert!(attempts.iter().filter(|r| r.is_ok()).count() >= 1, "{attempts:?}");
    assert!(attempts.iter().all(|r| matches!(r, Ok(_) | Err(StoreError::Unavailable(_)))), "{attempts:?}");
}

#[test]
fn a_hung_redis_fails_calls_within_the_budget_instead_of_hanging() {
    let server = PrivateRedis::start();
    let ns = Namespace::on(&server.url());
    let clock = ManualClock::at_epoch();
    let queue = ns.queue(Arc::new(clock.clone()));
    let known = queue.issue(user(), value(), clock.now()).unwrap().token.value;

    server.freeze();
    every_call_is_unavailable(&queue, &clock, &known);
    server.thaw();

    // Back without a restart; the data survived (the process only paused).
    wait_until_ready(&queue);
    assert_eq!(queue.find(&known).unwrap().unwrap().seq, 1);
    assert!(queue.issue(user(), value(), clock.now()).unwrap().created);
}
