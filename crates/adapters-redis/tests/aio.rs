//! The non-blocking client of the front door ([`AsyncRedisLines`]) against a real Redis:
//!
//! - the queue and rooms conformance suites with every `issue` and `find_with_cursor` of the
//!   queue (and of every room's line) made through the async port, on a tokio runtime, and the
//!   rest through the blocking adapter: both paths serve one line, as in a server;
//! - 64 concurrent async issues for one user, on several threads and connections, give one
//!   token;
//! - an outage on a private `redis-server`: a stopped server is answered `Unavailable` at once
//!   after the first failed attempt, and the same client recovers once it is back; a frozen one
//!   (SIGSTOP) after the script was sent is answered `Unavailable` within the read timeout, and
//!   the user's retry finds the token the lost call stored (never a second one); an issue
//!   that meets a connection the server dropped while it sat idle is sent again on a fresh one
//!   and answers 201; a round whose `WAIT` Redis refuses answers `Unavailable`, not an internal
//!   error;
//! - issues a thread receives while its line's call is out share the next calls, each answered
//!   on its own (a user twice, a token found, a corrupt record, a caller that gave up), and a
//!   thread whose sender's runtime stopped issues again;
//! - a round of replica confirmation (`WAIT`) holds back none of its thread's other calls;
//! - issues whose scripts answer while a round is out share the next one, from one thread or
//!   two (a round per line, not per thread), and none answers
//!   before a replica confirmed it (a private master whose replica is held by SIGSTOP).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, reason = "tests")]

mod common;

use std::net::TcpListener;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use adapters_redis::{AsyncRedisLines, RedisConfig, RedisQueue};
use domain::call::CommitWatch;
use domain::clock::ManualClock;
use domain::ids::UserId;
use domain::ports::{AsyncQueueLines, IssueOutcome, QueueLines, QueueStore, StoreError};
use domain::queue::{AdmissionOutcome, AdmissionPolicy, QueueCursor, QueueStats, QueueToken, TokenValue};
use domain::room::{DrawOutcome, RoomId};
use domain::service::Ports;
use time::OffsetDateTime;

use adapters_redis::testing::layout;
use common::{ports_on, Namespace};

/// One runtime for every bridged call of this binary (several threads: connections' drivers
/// run on its workers, and cases call from their own threads at once).
fn runtime() -> &'static tokio::runtime::Runtime {
    static RT: OnceLock<tokio::runtime::Runtime> = OnceLock::new();
    RT.get_or_init(|| tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap())
}

/// A line whose `issue` and `find_with_cursor` go through the async port (blocking this thread
/// on the runtime), and whose other calls go to the blocking adapter.
struct Bridged {
    room: RoomId,
    sync: Arc<dyn QueueStore>,
    lines: Arc<AsyncRedisLines>,
}

impl Bridged {
    /// The caller's watch: the one the case attached to this thread (`commit` cases), else a
    /// fresh one.
    fn watch() -> CommitWatch {
        domain::call::current().into_iter().next().unwrap_or_default()
    }
}

impl QueueStore for Bridged {
    fn issue(&self, user: UserId, value: TokenValue, now: OffsetDateTime) -> Result<IssueOutcome, StoreError> {
        let watch = Self::watch();
        runtime().block_on(self.lines.issue(&self.room, user, value, now, &watch))
    }

    fn find(&self, value: &TokenValue) -> Result<Option<QueueToken>, StoreError> {
        self.sync.find(value)
    }

    fn find_with_cursor(&self, value: &TokenValue) -> Result<Option<(QueueToken, QueueCursor)>, StoreError> {
        runtime().block_on(self.lines.find_with_cursor(&self.room, value))
    }

    fn cursor(&self) -> Result<QueueCursor, StoreError> {
        self.sync.cursor()
    }

    fn admit(&self, policy: &AdmissionPolicy) -> Result<AdmissionOutcome, StoreError> {
        self.sync.admit(policy)
    }

    fn expire_tokens(&self, limit: u32) -> Result<u64, StoreError> {
        self.sync.expire_tokens(limit)
    }

    fn use_up(&self, value: &TokenValue, at: OffsetDateTime) -> Result<(), StoreError> {
        self.sync.use_up(value, at)
    }

    fn stats(&self) -> Result<QueueStats, StoreError> {
        self.sync.stats()
    }

    fn ping(&self) -> Result<(), StoreError> {
        self.sync.ping()
    }

    fn draw(&self, opens_at: OffsetDateTime, seed: u64) -> Result<DrawOutcome, StoreError> {
        self.sync.draw(opens_at, seed)
    }

    fn note_seen(&self, values: &[TokenValue], at: OffsetDateTime) -> Result<(), StoreError> {
        self.sync.note_seen(values, at)
    }
}

struct BridgedLines {
    sync: Arc<dyn QueueLines>,
    lines: Arc<AsyncRedisLines>,
}

impl QueueLines for BridgedLines {
    fn line(&self, room: &RoomId) -> Arc<dyn QueueStore> {
        Arc::new(Bridged { room: room.clone(), sync: self.sync.line(room), lines: self.lines.clone() })
    }
}

/// The conformance harness with the front door's calls through the async port.
struct AsyncRedis {
    ports: Ports,
    _namespace: Namespace,
}

impl port_tests::Harness for AsyncRedis {
    fn new_store(clock: ManualClock) -> Self {
        let namespace = Namespace::new();
        let ports = ports_on(&namespace, &adapters_memory::MemoryStore::new(), &clock);
        let lines = Arc::new(AsyncRedisLines::new(&namespace.config()).unwrap());
        let queue: Arc<dyn QueueStore> =
            Arc::new(Bridged { room: RoomId::main(), sync: ports.queue.clone(), lines: lines.clone() });
        let room_lines: Arc<dyn QueueLines> = Arc::new(BridgedLines { sync: ports.lines.clone(), lines });
        Self { ports: Ports { queue, lines: room_lines, ..ports }, _namespace: namespace }
    }

    fn ports(&self) -> Ports {
        self.ports.clone()
    }
}

port_tests::queue_suite!(AsyncRedis);
port_tests::rooms_suite!(AsyncRedis);

fn user() -> UserId {
    UserId::from_uuid(uuid::Uuid::new_v4())
}

fn value() -> TokenValue {
    let mut bytes = [0_u8; 32];
    bytes[..16].copy_from_slice(uuid::Uuid::new_v4().as_bytes());
    bytes[16..].copy_from_slice(uuid::Uuid::new_v4().as_bytes());
    TokenValue::from_bytes(bytes)
}

/// A value Redis' layout could hold (random bytes, then `seq` 1), so a read of it asks Redis.
fn a_seq_1_value() -> TokenValue {
    let mut bytes = [0_u8; 32];
    bytes[..16].copy_from_slice(uuid::Uuid::new_v4().as_bytes());
    bytes[24..].copy_from_slice(&1_u64.to_be_bytes());
    TokenValue::from_bytes(bytes)
}

fn now() -> OffsetDateTime {
    domain::clock::truncate_to_micros(OffsetDateTime::now_utc())
}

/// An issue of a new token for `who` in room `main`, as a future holding what it needs (to
/// spawn it, or to run it on another thread's runtime).
fn issue_in_main(
    lines: &Arc<AsyncRedisLines>,
    who: UserId,
    watch: CommitWatch,
) -> impl std::future::Future<Output = Result<IssueOutcome, StoreError>> + Send + 'static {
    let lines = lines.clone();
    async move { lines.issue(&RoomId::main(), who, value(), now(), &watch).await }
}

#[test]
fn concurrent_async_issues_for_one_user_yield_one_token() {
    let ns = Namespace::new();
    let lines = Arc::new(AsyncRedisLines::new(&ns.config()).unwrap());
    let who = user();
    // Four callers of sixteen issues each, all in flight at once on the runtime's worker
    // threads (a connection each).
    let outcomes: Vec<IssueOutcome> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..4)
            .map(|_| {
                let lines = lines.clone();
                s.spawn(move || {
                    runtime().block_on(async {
                        let main = RoomId::main();
                        let calls = (0..16).map(|_| {
                            let lines = lines.clone();
                            let main = main.clone();
                            async move {
                                let watch = CommitWatch::new();
                                lines.issue(&main, who, value(), now(), &watch).await.unwrap()
                            }
                        });
                        let mut all = Vec::new();
                        for out in futures_join(calls).await {
                            all.push(out);
                        }
                        all
                    })
                })
            })
            .collect();
        handles.into_iter().flat_map(|h| h.join().unwrap()).collect()
    });
    assert_eq!(outcomes.len(), 64);
    assert_eq!(outcomes.iter().filter(|o| o.created).count(), 1, "one call created the token");
    let first = &outcomes[0].token.value;
    assert!(outcomes.iter().all(|o| o.token.value == *first && o.token.seq == 1), "everyone got that token");
    let blocking = ns.queue_on_server_time();
    assert_eq!(blocking.stats().unwrap().issued_through, 1, "one number taken");
}

/// Runs every future of `calls` at once on this task.
async fn futures_join<T: Send + 'static>(
    calls: impl Iterator<Item = impl std::future::Future<Output = T> + Send + 'static>,
) -> Vec<T> {
    let mut set = tokio::task::JoinSet::new();
    for call in calls {
        set.spawn(call);
    }
    let mut out = Vec::new();
    while let Some(done) = set.join_next().await {
        out.push(done.unwrap());
    }
    out
}

#[test]
fn a_token_of_another_room_is_refused_and_not_found() {
    let ns = Namespace::new();
    let lines = AsyncRedisLines::new(&ns.config()).unwrap();
    let room = RoomId::parse("tour").unwrap();
    let main_value = value();
    runtime().block_on(async {
        let refused = lines.issue(&room, user(), main_value.clone(), now(), &CommitWatch::new()).await;
        assert!(matches!(refused, Err(StoreError::Internal(_))), "{refused:?}");
        assert_eq!(lines.find_with_cursor(&room, &main_value).await.unwrap(), None);
    });
    assert!(ns.keys().is_empty(), "nothing written");
}

/// A `redis-server` of this test's own on a free port, killed (by its pid) when dropped.
struct PrivateRedis {
    port: u16,
    dir: std::path::PathBuf,
    child: Option<Child>,
}

impl PrivateRedis {
    /// A free port with no server on it yet.
    fn reserve() -> Self {
        let port = TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        let dir = std::env::temp_dir().join(format!("redis-aio-{}", uuid::Uuid::new_v4().simple()));
        std::fs::create_dir_all(&dir).unwrap();
        Self { port, dir, child: None }
    }

    fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    /// Starts the server on the port and waits until it answers a PING.
    fn launch(&mut self) {
        self.launch_with(&[]);
    }

    /// [`Self::launch`] with more arguments to `redis-server`.
    fn launch_with(&mut self, args: &[&str]) {
        let child = Command::new("redis-server")
            .args(["--port", &self.port.to_string(), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"])
            .args(["--repl-diskless-sync-delay", "0"])
            .args(args)
            .arg("--dir")
            .arg(&self.dir)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("redis-server must be installed");
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(10);
        let client = redis::Client::open(self.url()).unwrap();
        loop {
            let pong = client
                .get_connection_with_timeout(Duration::from_millis(200))
                .and_then(|mut c| redis::cmd("PING").query::<String>(&mut c));
            if pong.is_ok() {
                return;
            }
            assert!(Instant::now() < deadline, "the private redis-server did not start");
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    fn signal(&self, sig: &str) {
        let pid = self.child.as_ref().unwrap().id().to_string();
        assert!(Command::new("kill").args([sig, &pid]).status().unwrap().success());
    }
}

impl Drop for PrivateRedis {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = Command::new("kill").args(["-CONT", &child.id().to_string()]).status();
            let _ = child.kill();
            let _ = child.wait();
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

#[test]
fn with_redis_down_calls_fail_at_once_and_the_same_client_recovers() {
    let mut server = PrivateRedis::reserve();
    let cfg = RedisConfig::with_url_and_prefix(server.url(), "aio-down");
    let lines = AsyncRedisLines::new(&cfg).unwrap();
    let main = RoomId::main();
    runtime().block_on(async {
        // Nothing listens: the first attempt is refused.
        let started = Instant::now();
        let first = lines.issue(&main, user(), value(), now(), &CommitWatch::new()).await;
        assert!(matches!(first, Err(StoreError::Unavailable(_))), "{first:?}");
        assert!(started.elapsed() < cfg.timeouts.connect, "refused, not timed out: {:?}", started.elapsed());
        // Then every call fails without trying, but one per probe interval.
        let started = Instant::now();
        for _ in 0..50 {
            let call = lines.find_with_cursor(&main, &a_seq_1_value()).await;
            assert!(matches!(call, Err(StoreError::Unavailable(_))), "{call:?}");
        }
        assert!(started.elapsed() < Duration::from_millis(250), "fast: {:?}", started.elapsed());
    });

    server.launch();
    let deadline = Instant::now() + Duration::from_secs(5);
    let who = user();
    let issued = loop {
        match runtime().block_on(lines.issue(&main, who, value(), now(), &CommitWatch::new())) {
            Ok(out) => break out,
            Err(StoreError::Unavailable(_)) if Instant::now() < deadline => {
                std::thread::sleep(Duration::from_millis(50))
            }
            Err(e) => panic!("not back in time: {e}"),
        }
    };
    assert!(issued.created && issued.token.seq == 1, "no earlier attempt stored anything: {issued:?}");
}

#[test]
fn a_lost_issue_reply_is_unavailable_and_the_retry_finds_the_token() {
    let mut server = PrivateRedis::reserve();
    server.launch();
    let mut cfg = RedisConfig::with_url_and_prefix(server.url(), "aio-hung");
    cfg.timeouts.read = Duration::from_millis(300);
    let lines = AsyncRedisLines::new(&cfg).unwrap();
    let main = RoomId::main();
    let who = user();
    // One thread, as an HTTP worker: the issue after the freeze goes on the connection the
    // first one opened (on the shared runtime its call could be sent from another worker
    // thread, which would first have to open a connection: then nothing is sent at all).
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    rt.block_on(async {
        // Connected and the script loaded (a fresh server answers the first EVALSHA with
        // NOSCRIPT), then the server freezes: the script is sent and its reply never comes.
        assert!(lines.issue(&main, user(), value(), now(), &CommitWatch::new()).await.unwrap().created);
        server.signal("-STOP");
        let watch = CommitWatch::new();
        let started = Instant::now();
        let lost = lines.issue(&main, who, value(), now(), &watch).await;
        assert!(matches!(lost, Err(StoreError::Unavailable(_))), "{lost:?}");
        assert!(started.elapsed() < Duration::from_secs(2), "bounded by the read timeout: {:?}", started.elapsed());
        assert!(watch.committing(), "the write was sent: the caller could not have said nothing was done");
        // A caller that gave up first never sends.
        let gone = CommitWatch::new();
        assert!(gone.abandon());
        let refused = lines.issue(&main, user(), value(), now(), &gone).await;
        assert!(matches!(refused, Err(StoreError::Timeout(_))), "{refused:?}");
        server.signal("-CONT");
    });
    let deadline = Instant::now() + Duration::from_secs(5);
    let retry = loop {
        match rt.block_on(lines.issue(&main, who, value(), now(), &CommitWatch::new())) {
            Ok(out) => break out,
            Err(StoreError::Unavailable(_)) if Instant::now() < deadline => {
                std::thread::sleep(Duration::from_millis(50))
            }
            Err(e) => panic!("not back in time: {e}"),
        }
    };
    assert!(!retry.created, "the lost call stored the token; the retry returns it: {retry:?}");
    assert_eq!(retry.token.seq, 2);
    let blocking = RedisQueue::new(&cfg).unwrap();
    assert_eq!(blocking.stats().unwrap().issued_through, 2, "the user who gave up took no number");
}

/// A private Redis, the async client of its lines under `prefix` (and its configuration), and
/// an admin connection to it.
fn launched_lines(prefix: &str) -> (PrivateRedis, RedisConfig, Arc<AsyncRedisLines>, redis::Connection) {
    let mut server = PrivateRedis::reserve();
    server.launch();
    let cfg = RedisConfig::with_url_and_prefix(server.url(), prefix);
    let lines = Arc::new(AsyncRedisLines::new(&cfg).unwrap());
    let admin = redis::Client::open(server.url()).unwrap().get_connection().unwrap();
    (server, cfg, lines, admin)
}

/// Issues received while their line's call is out go together in the next calls (at most 64
/// a call), and each is answered as if it were a call of its own: a user twice gets
/// one token, a user whose token is found gets it, an issue whose record is corrupt fails
/// alone, an issue whose caller gave up while it was gathered is not sent, and the new tokens
/// take gapless numbers.
#[test]
fn issues_gathered_while_a_call_is_out_share_calls_and_are_answered_each_on_its_own() {
    let (server, cfg, lines, mut admin) = launched_lines("aio-gather");
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    let issue = |who: UserId, watch: CommitWatch| issue_in_main(&lines, who, watch);
    // Connected and the script loaded; then `corrupt`'s token (seq 1) is made to sit behind the
    // cursor with no admission record, which the script refuses to read.
    let corrupt = user();
    assert_eq!(rt.block_on(issue(corrupt, CommitWatch::new())).unwrap().token.seq, 1);
    redis::cmd("HSET").arg("{aio-gather}:cursor").arg("admitted").arg(1).exec(&mut admin).unwrap();
    redis::cmd("CONFIG").arg("RESETSTAT").exec(&mut admin).unwrap();
    // A call out that Redis does not answer yet, and behind it what the thread receives.
    server.signal("-STOP");
    let (first_user, twice, gave_up) = (user(), user(), CommitWatch::new());
    let out = rt.spawn(issue(first_user, CommitWatch::new()));
    rt.block_on(async { tokio::time::sleep(Duration::from_millis(50)).await });
    let mut gathered: Vec<(&str, tokio::task::JoinHandle<Result<IssueOutcome, StoreError>>)> = Vec::new();
    for _ in 0..70 {
        gathered.push(("new", rt.spawn(issue(user(), CommitWatch::new()))));
    }
    for (kind, who, watch) in [
        ("found", first_user, CommitWatch::new()),
        ("twice", twice, CommitWatch::new()),
        ("corrupt", corrupt, CommitWatch::new()),
        ("twice", twice, CommitWatch::new()),
        ("gave up", user(), gave_up.clone()),
    ] {
        gathered.push((kind, rt.spawn(issue(who, watch))));
    }
    rt.block_on(async { tokio::time::sleep(Duration::from_millis(50)).await });
    assert!(gave_up.abandon(), "its issue waits, not sent yet");
    server.signal("-CONT");
    let first = rt.block_on(out).unwrap().unwrap();
    assert!(first.created && first.token.seq == 2, "{first:?}");
    let mut created = vec![first.token.seq];
    let mut twice_tokens = Vec::new();
    for (kind, handle) in gathered {
        let answer = rt.block_on(handle).unwrap();
        match (kind, answer) {
            ("new", Ok(out)) if out.created => created.push(out.token.seq),
            ("found", Ok(out)) => assert!(!out.created && out.token.value == first.token.value, "{out:?}"),
            ("twice", Ok(out)) => {
                if out.created {
                    created.push(out.token.seq);
                }
                twice_tokens.push(out);
            }
            ("corrupt", Err(StoreError::Internal(e))) => assert!(e.contains("no admission record"), "{e}"),
            ("gave up", Err(StoreError::Timeout(_))) => {}
            (kind, answer) => panic!("{kind}: {answer:?}"),
        }
    }
    assert_eq!(twice_tokens.iter().filter(|o| o.created).count(), 1, "{twice_tokens:?}");
    assert_eq!(twice_tokens[0].token.value, twice_tokens[1].token.value);
    created.sort_unstable();
    assert_eq!(created, (2..=73).collect::<Vec<i64>>(), "gapless: the refused and the abandoned took none");
    let calls = info(&mut admin, "commandstats", "cmdstat_evalsha:");
    assert!(calls.starts_with("calls=3,"), "the call out, then 64 and 10 in two: {calls}");
    assert_eq!(RedisQueue::new(&cfg).unwrap().stats().unwrap().issued_through, 73);
}

/// Issues gathered while their line's call is out are sent in one call, whichever worker
/// received them: the issues of two threads, each on a runtime of its own, share the next call
/// (sent by the task on the runtime of the thread whose issue found no call out), and each is
/// answered on its own thread.
#[test]
fn issues_of_two_threads_gathered_while_a_call_is_out_share_the_next_call() {
    let (server, _, lines, mut admin) = launched_lines("aio-gather-threads");
    let issue = |lines: &Arc<AsyncRedisLines>| issue_in_main(lines, user(), CommitWatch::new());
    let sending = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    assert!(sending.block_on(issue(&lines)).unwrap().created, "connected, the script loaded");
    redis::cmd("CONFIG").arg("RESETSTAT").exec(&mut admin).unwrap();
    server.signal("-STOP");
    let out = sending.spawn(issue(&lines));
    sending.block_on(async { tokio::time::sleep(Duration::from_millis(50)).await });
    let mine: Vec<_> = (0..5).map(|_| sending.spawn(issue(&lines))).collect();
    let other = {
        let lines = lines.clone();
        std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
            rt.block_on(async {
                let theirs: Vec<_> = (0..5).map(|_| tokio::spawn(issue(&lines))).collect();
                let mut seqs = Vec::new();
                for handle in theirs {
                    let issued = tokio::time::timeout(Duration::from_secs(10), handle).await;
                    seqs.push(issued.expect("answered").unwrap().unwrap().token.seq);
                }
                seqs
            })
        })
    };
    sending.block_on(async { tokio::time::sleep(Duration::from_millis(50)).await });
    server.signal("-CONT");
    let mut seqs = vec![sending.block_on(out).unwrap().unwrap().token.seq];
    for handle in mine {
        seqs.push(sending.block_on(handle).unwrap().unwrap().token.seq);
    }
    seqs.extend(other.join().unwrap());
    seqs.sort_unstable();
    assert_eq!(seqs, (2..=12).collect::<Vec<i64>>());
    let calls = info(&mut admin, "commandstats", "cmdstat_evalsha:");
    assert!(calls.starts_with("calls=2,"), "the call out, then both threads' ten in one: {calls}");
}

/// A line's gathered issues are sent by a task on the runtime of the worker whose issue found
/// no call out; should that runtime stop while a call is out and issues are gathered behind
/// it, the line's next issue (on a runtime of its own) starts a sender anew instead of
/// joining a gathering nobody sends.
#[test]
fn a_line_whose_issue_sender_stopped_issues_again() {
    let (server, _, lines, _admin) = launched_lines("aio-gather-stop");
    let issue = |lines: &Arc<AsyncRedisLines>| issue_in_main(lines, user(), CommitWatch::new());
    let stopped = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    assert!(stopped.block_on(issue(&lines)).unwrap().created);
    server.signal("-STOP");
    let _out = stopped.spawn(issue(&lines));
    stopped.block_on(async { tokio::time::sleep(Duration::from_millis(50)).await });
    let _gathered = stopped.spawn(issue(&lines));
    stopped.block_on(async { tokio::time::sleep(Duration::from_millis(20)).await });
    drop(stopped);
    server.signal("-CONT");
    let next = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    let answered = next.block_on(async { tokio::time::timeout(Duration::from_secs(10), issue(&lines)).await });
    let issued = answered.expect("the next issue is sent, not left in a gathering nobody sends").unwrap();
    assert!(issued.created, "{issued:?}");
}

/// A connection the server dropped while it sat idle (what a worker holds after a restart, or
/// on a cluster after a failover it served no call of the line in): the next issue meets it
/// dead at once and is sent again on a fresh connection, so it answers 201 instead of 503;
/// the user still holds one token, and the line took one number.
#[test]
fn an_issue_that_meets_a_connection_dropped_while_idle_is_sent_again_on_a_fresh_one() {
    let mut server = PrivateRedis::reserve();
    server.launch();
    let cfg = RedisConfig::with_url_and_prefix(server.url(), "aio-stale");
    let lines = AsyncRedisLines::new(&cfg).unwrap();
    let main = RoomId::main();
    assert!(runtime().block_on(lines.issue(&main, user(), value(), now(), &CommitWatch::new())).unwrap().created);
    let mut admin = redis::Client::open(server.url()).unwrap().get_connection().unwrap();
    let killed: u64 =
        redis::cmd("CLIENT").arg("KILL").arg("TYPE").arg("normal").arg("SKIPME").arg("yes").query(&mut admin).unwrap();
    assert!(killed >= 1, "the client's connection was open");
    std::thread::sleep(Duration::from_millis(100));

    let who = user();
    let planned = value();
    let watch = CommitWatch::new();
    let issued = runtime().block_on(lines.issue(&main, who, planned, now(), &watch)).unwrap();
    assert!(issued.created, "{issued:?}");
    assert_eq!(issued.token.seq, 2);
    assert!(watch.committing());
    let again = runtime().block_on(lines.issue(&main, who, value(), now(), &CommitWatch::new())).unwrap();
    assert!(!again.created && again.token.value == issued.token.value, "{again:?}");
    assert_eq!(RedisQueue::new(&cfg).unwrap().stats().unwrap().issued_through, 2, "one number for the user");
    let clients: String = redis::cmd("CLIENT").arg("LIST").query(&mut admin).unwrap();
    assert!(clients.lines().count() >= 2, "the issue went on a new connection: {clients}");
}

/// Waits until the replica of the master `admin` is connected to confirms its writes. `online`
/// in `INFO replication` is not enough: after a diskless sync the master holds the replication
/// stream back until the replica's first `REPLCONF ACK` (sent once a second), so a `WAIT` in
/// that window times out; a write confirmed by `WAIT 1` proves the stream flows.
fn await_streaming_replica(admin: &mut redis::Connection) {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let () = redis::cmd("SET").arg("replica-check").arg("1").query(admin).unwrap();
        let acked: u64 = redis::cmd("WAIT").arg(1).arg(200).query(admin).unwrap();
        if acked == 1 {
            return;
        }
        assert!(Instant::now() < deadline, "the replica did not sync");
    }
}

/// A private master with a replica streaming from it, the async and blocking clients of its
/// lines under `prefix` (issues confirmed by one replica, timeouts long enough for a replica
/// held for a while), and an admin connection to the master.
fn held_replica_lines(
    prefix: &str,
) -> (PrivateRedis, PrivateRedis, Arc<AsyncRedisLines>, RedisQueue, redis::Connection) {
    let mut master = PrivateRedis::reserve();
    master.launch();
    let mut replica = PrivateRedis::reserve();
    replica.launch_with(&["--replicaof", "127.0.0.1", &master.port.to_string()]);
    let mut cfg = RedisConfig::with_url_and_prefix(master.url(), prefix);
    cfg.replica_acks = Some(1);
    cfg.timeouts.replica_ack = Duration::from_secs(60);
    cfg.timeouts.read = Duration::from_secs(120);
    let lines = Arc::new(AsyncRedisLines::new(&cfg).unwrap());
    let line = RedisQueue::new(&cfg).unwrap();
    let mut admin = redis::Client::open(master.url()).unwrap().get_connection().unwrap();
    await_streaming_replica(&mut admin);
    (master, replica, lines, line, admin)
}

/// A field of `INFO section` of the server of `admin` ("" when absent).
fn info(admin: &mut redis::Connection, section: &str, field: &str) -> String {
    let info: String = redis::cmd("INFO").arg(section).query(admin).unwrap();
    info.lines().find_map(|l| l.strip_prefix(field)).unwrap_or_default().trim().to_owned()
}

/// A call whose `WAIT` Redis refuses (here an ACL that lets the service's user run scripts and
/// reads but not `WAIT`) confirms nothing: its issues answer `Unavailable` (503), not an
/// internal error, and the user's retry finds the stored token once `WAIT` is allowed again.
#[test]
fn an_issue_whose_wait_redis_refuses_is_unavailable_and_its_retry_finds_the_token() {
    let mut master = PrivateRedis::reserve();
    master.launch();
    let mut replica = PrivateRedis::reserve();
    replica.launch_with(&["--replicaof", "127.0.0.1", &master.port.to_string()]);
    let mut admin = redis::Client::open(master.url()).unwrap().get_connection().unwrap();
    await_streaming_replica(&mut admin);
    let mut acl = |rule: &str| {
        let () = redis::cmd("ACL")
            .arg("SETUSER")
            .arg("svc")
            .arg("on")
            .arg(">pw")
            .arg("~*")
            .arg("+@all")
            .arg(rule)
            .query(&mut admin)
            .unwrap();
    };
    acl("-wait");
    let mut cfg = RedisConfig::with_url_and_prefix(format!("redis://svc:pw@127.0.0.1:{}", master.port), "aio-refused");
    cfg.replica_acks = Some(1);
    // The refused `WAIT` answers at once. The retry's waits for the replica, which the other
    // tests running beside this one can slow past the default 0.75 s (the test failed once in
    // about twenty runs of the suite; its message was not kept, and this is the one wait in it
    // with a timeout that short).
    cfg.timeouts.replica_ack = Duration::from_secs(10);
    cfg.timeouts.read = Duration::from_secs(30);
    let lines = AsyncRedisLines::new(&cfg).unwrap();
    let main = RoomId::main();
    let who = user();
    let refused = runtime().block_on(lines.issue(&main, who, value(), now(), &CommitWatch::new()));
    assert!(
        matches!(&refused, Err(StoreError::Unavailable(m)) if m.contains("WAIT") || m.contains("wait")),
        "{refused:?}"
    );
    acl("+wait");
    let retry = runtime().block_on(lines.issue(&main, who, value(), now(), &CommitWatch::new())).unwrap();
    assert!(!retry.created && retry.token.seq == 1, "the refused call's token is the user's: {retry:?}");
}

#[test]
fn a_readiness_ping_that_redis_answered_lets_the_next_call_connect_at_once() {
    let mut server = PrivateRedis::reserve();
    let cfg = RedisConfig::with_url_and_prefix(server.url(), "aio-ready");
    let lines = AsyncRedisLines::new(&cfg).unwrap();
    let main = RoomId::main();
    let refused = runtime().block_on(lines.find_with_cursor(&main, &a_seq_1_value()));
    assert!(matches!(refused, Err(StoreError::Unavailable(_))), "{refused:?}");
    server.launch();
    // What the app's readiness probe does once the blocking pool's PING is answered.
    RedisQueue::new(&cfg).unwrap().ping().unwrap();
    lines.redis_answered();
    let issued = runtime().block_on(lines.issue(&main, user(), value(), now(), &CommitWatch::new())).unwrap();
    assert!(issued.created);
}

/// An issue's `WAIT` holds its socket until Redis answers it; the thread's other calls go to
/// the pair's other socket meanwhile. Here the only replica is frozen (SIGSTOP) once the line
/// is warm, so the issue's `WAIT` stays out: a poll from the same thread answers while Redis
/// still has that `WAIT` blocked, and the issue answers only once the replica runs again.
#[test]
fn calls_are_not_held_behind_an_issue_s_replica_confirmation() {
    let (_master, replica, lines, _line, mut admin) = held_replica_lines("aio-pair");
    let blocked =
        |admin: &mut redis::Connection| -> u64 { info(admin, "clients", "blocked_clients:").parse().unwrap() };
    let main = RoomId::main();
    let mut random = [0_u8; 24];
    random[..16].copy_from_slice(uuid::Uuid::new_v4().as_bytes());
    // The line keeps the planned value's random part and puts its arrival seq after it.
    let (planned, token) = (layout::value_of(&main, &random, 0), layout::value_of(&main, &random, 2));
    // One thread: every call is made with this thread's connections.
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    rt.block_on(async {
        assert!(lines.issue(&main, user(), value(), now(), &CommitWatch::new()).await.unwrap().created, "warm");
        replica.signal("-STOP");
        let issue = {
            let (lines, main) = (lines.clone(), main.clone());
            tokio::spawn(async move { lines.issue(&main, user(), planned, now(), &CommitWatch::new()).await })
        };
        // The issue's script ran and its `WAIT` is out.
        while blocked(&mut admin) == 0 {
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
        let found = lines.find_with_cursor(&main, &token).await.unwrap().expect("the stored token");
        assert_eq!(blocked(&mut admin), 1, "the poll answered while the issue's WAIT was out");
        assert!(!issue.is_finished(), "the issue waits for its confirmation");
        replica.signal("-CONT");
        let issued = issue.await.unwrap().unwrap();
        assert_eq!((issued.token.seq, issued.token.value.clone()), (2, token));
        assert_eq!(found.0.seq, 2);
        assert_eq!(blocked(&mut admin), 0);
    });
}

/// Issues that arrive while their line's call waits for its replica are gathered into the next
/// calls, each confirmed by a `WAIT` of its own. Here the only replica is frozen (SIGSTOP) once
/// the line is warm: of 200 issues (from one thread, or from two, each with a runtime and a
/// pair of connections of its own, as two HTTP workers), one call is out, Redis holds its one
/// `WAIT`, nothing else is sent and no issue answers. Once the replica runs again every issue
/// answers, gapless, in a few calls (the one out, then at most 64 a call).
#[test]
fn issues_gathered_while_a_call_is_confirmed_go_in_the_next_calls() {
    issues_gathered_behind_a_confirmation(1);
}

#[test]
fn issues_of_two_threads_gathered_while_a_call_is_confirmed_go_in_the_next_calls() {
    issues_gathered_behind_a_confirmation(2);
}

fn issues_gathered_behind_a_confirmation(threads: usize) {
    const N: usize = 200;
    let (_master, replica, lines, line, mut admin) = held_replica_lines("aio-confirmed");
    let calls = |admin: &mut redis::Connection, cmd: &str| -> u64 {
        let stats = info(admin, "commandstats", &format!("cmdstat_{cmd}:calls="));
        stats.split(',').next().and_then(|n| n.parse().ok()).unwrap_or(0)
    };
    let deadline = Instant::now() + Duration::from_secs(30);
    let main = RoomId::main();
    // A thread and a runtime each. Each first issues one token (connected, the script loaded,
    // the replica confirming), then waits for the replica to be frozen before its share.
    let (warm, frozen) =
        (Arc::new(std::sync::Barrier::new(threads + 1)), Arc::new(std::sync::Barrier::new(threads + 1)));
    let (answered, warmed) =
        (Arc::new(std::sync::atomic::AtomicUsize::new(0)), Arc::new(std::sync::atomic::AtomicUsize::new(0)));
    let issues: Vec<_> = (0..threads)
        .map(|_| {
            let (lines, main, answered) = (lines.clone(), main.clone(), answered.clone());
            let (warm, frozen, warmed) = (warm.clone(), frozen.clone(), warmed.clone());
            std::thread::spawn(move || {
                let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
                rt.block_on(async {
                    lines.issue(&main, user(), value(), now(), &CommitWatch::new()).await.unwrap();
                    // Driven until every thread's first issue answered: the line's sender may
                    // be this runtime's, with the other thread's issue gathered.
                    warmed.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                    while warmed.load(std::sync::atomic::Ordering::SeqCst) < threads {
                        tokio::time::sleep(Duration::from_millis(1)).await;
                    }
                });
                warm.wait();
                frozen.wait();
                rt.block_on(async {
                    let mut calls = tokio::task::JoinSet::new();
                    for _ in 0..N / threads {
                        let (lines, main, answered) = (lines.clone(), main.clone(), answered.clone());
                        calls.spawn(async move {
                            let out = lines.issue(&main, user(), value(), now(), &CommitWatch::new()).await;
                            answered.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                            out
                        });
                    }
                    let outcomes = calls.join_all().await;
                    // The line's sender may run on this runtime with the other thread's issues
                    // (its task runs on the runtime of the issue that found none): it runs
                    // until every issue answered, as a server's workers always run.
                    while answered.load(std::sync::atomic::Ordering::SeqCst) < N {
                        tokio::time::sleep(Duration::from_millis(1)).await;
                    }
                    outcomes
                })
            })
        })
        .collect();
    warm.wait();
    let issued_before = i64::try_from(threads).unwrap();
    assert_eq!(line.stats().unwrap().issued_through, issued_before);
    let (evals_before, waits_before) = (calls(&mut admin, "evalsha"), calls(&mut admin, "wait"));
    replica.signal("-STOP");
    frozen.wait();
    while info(&mut admin, "clients", "blocked_clients:") == "0" {
        assert!(Instant::now() < deadline, "no call was sent");
        std::thread::sleep(Duration::from_millis(5));
    }
    // Any other call, had one been sent, would have run by now.
    std::thread::sleep(Duration::from_millis(200));
    assert_eq!(info(&mut admin, "clients", "blocked_clients:"), "1", "one WAIT is out for the whole line");
    assert_eq!(calls(&mut admin, "evalsha") - evals_before, 1, "one call is out; the rest wait gathered");
    let first_call = line.stats().unwrap().issued_through - issued_before;
    assert!((1..=64).contains(&first_call), "{first_call} issues in the first call");
    assert_eq!(answered.load(std::sync::atomic::Ordering::SeqCst), 0, "no issue answers before a replica confirms it");
    replica.signal("-CONT");
    let outcomes: Vec<_> = issues.into_iter().flat_map(|t| t.join().unwrap()).collect();
    let (evals, waits) = (calls(&mut admin, "evalsha") - evals_before, calls(&mut admin, "wait") - waits_before);
    let mut seqs: Vec<i64> = outcomes.into_iter().map(|o| o.unwrap().token.seq).collect();
    seqs.sort_unstable();
    assert_eq!(seqs, (issued_before + 1..=i64::try_from(N).unwrap() + issued_before).collect::<Vec<_>>());
    // The one out, then the rest at most 64 a call: each lot the sender took from the gathering
    // (what was gathered when a call was sent, then what came meanwhile) ends in a smaller call.
    assert!((2..=7).contains(&evals), "{evals} calls for {N} issues (the first {first_call}, WAITs {waits})");
    // A `WAIT` that blocked is counted once it answers, on some Redis versions not at all.
    assert!((evals - 1..=evals).contains(&waits), "{waits} WAITs for {evals} calls");
}

/// A line's gathered issues are sent by a task on the runtime of the worker whose issue found
/// no call out; when that runtime stops (a worker restarted) while its call waits for its
/// replica and another thread's issue is gathered behind it, that issue answers `Unavailable`
/// (it was never sent) instead of waiting for a sender that is gone, and the line's next issue
/// starts a sender of its own and is confirmed.
#[test]
fn a_line_whose_sender_stopped_during_a_confirmation_confirms_its_next_issue() {
    let (master, replica, lines, line, _admin) = held_replica_lines("aio-sender");
    let deadline = Instant::now() + Duration::from_secs(30);
    let issue = |lines: &Arc<AsyncRedisLines>| issue_in_main(lines, user(), CommitWatch::new());
    // This thread's runtime (a thread's connections are driven by the runtime that opened them).
    let second = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    assert!(second.block_on(issue(&lines)).unwrap().created, "connected, the script loaded");
    replica.signal("-STOP");
    // On a thread of its own: an issue whose script ran and whose `WAIT` is out; the thread's
    // runtime stops when told.
    let (sent_tx, sent_rx) = std::sync::mpsc::channel();
    let (stop_tx, stop_rx) = std::sync::mpsc::channel::<()>();
    let first = {
        let (lines, url) = (lines.clone(), master.url());
        std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
            let mut admin = redis::Client::open(url).unwrap().get_connection().unwrap();
            let _lost = rt.spawn(issue(&lines));
            rt.block_on(async {
                while info(&mut admin, "clients", "blocked_clients:") != "1" {
                    assert!(Instant::now() < deadline, "the first call was not sent");
                    tokio::time::sleep(Duration::from_millis(2)).await;
                }
            });
            sent_tx.send(()).unwrap();
            stop_rx.recv().unwrap();
            drop(rt);
        })
    };
    sent_rx.recv().unwrap();
    assert_eq!(line.stats().unwrap().issued_through, 2, "the first script ran");
    // This thread's issue waits gathered behind the first call.
    let waiting = second.spawn(issue(&lines));
    second.block_on(async { tokio::time::sleep(Duration::from_millis(50)).await });
    assert!(!waiting.is_finished());
    stop_tx.send(()).unwrap();
    first.join().unwrap();
    let abandoned = second.block_on(async { tokio::time::timeout(Duration::from_secs(10), waiting).await });
    let abandoned = abandoned.expect("the waiting issue answers once its sender is gone").unwrap();
    assert!(matches!(abandoned, Err(StoreError::Unavailable(_))), "{abandoned:?}");
    assert_eq!(line.stats().unwrap().issued_through, 2, "the gathered issue was never sent");
    replica.signal("-CONT");
    let next = second.block_on(async { tokio::time::timeout(Duration::from_secs(10), issue(&lines)).await });
    let next = next.expect("the line's next issue is sent and confirmed, not left with a sender that is gone").unwrap();
    assert_eq!(next.token.seq, 3);
}
