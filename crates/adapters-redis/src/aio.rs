//! The front door's two queue calls, joining a line (`issue`) and polling a token
//! (`find_with_cursor`), made without blocking: [`AsyncRedisLines`] implements the domain's
//! [`AsyncQueueLines`] with the `redis` crate's tokio client, so an HTTP worker sends the script
//! and awaits its reply itself, with no hop to a blocking thread and back. It runs the same Lua
//! scripts on the same keys as [`crate::RedisQueue`] and decodes their replies with the same
//! codec, so both paths serve one line at once and every guarantee of the crate docs holds
//! whichever path a call took. Every other queue call (admission, expiry, use-up, stats, draw,
//! presence, readiness) stays on the blocking pool.
//!
//! # Connections
//!
//! One [`redis::aio::MultiplexedConnection`] per thread that calls (in a server, per HTTP
//! worker: each worker is a single-threaded runtime): the connection's driver task is spawned
//! on the runtime of the thread that opened it, so a worker's reply wakes that same worker and
//! never crosses to another thread (the context switches this client exists to remove). A
//! multiplexed connection pipelines every call of its worker, so no pool is needed. A thread
//! whose issues replicas confirm holds two (see "Replica confirmations in rounds").
//!
//! Reconnecting is this module's, not the crate's connection manager's, so that an outage is
//! answered as the blocking pool answers it (see `pool`): a connection is opened on demand and
//! proven with a `PING`, within the connect timeout; when that fails, Redis is *unreachable* and
//! every call fails at once with `Unavailable` (503 in microseconds, no request waits out a
//! connect timeout) except one per `probe_interval`, which tries to connect again; the first
//! connection opened clears the state, and so does a readiness `PING` that Redis answered
//! ([`AsyncRedisLines::redis_answered`]: ready means both paths connect). One attempt is made at a time over all threads; calls
//! that waited for an attempt that failed fail with it. A call that meets a lost connection
//! (I/O error, timeout, unparsable reply) drops it and retires every connection opened before
//! (an *epoch*, as the pool's), so after a Redis restart each worker opens a fresh one.
//!
//! # Timeouts, lost replies, and the commit agreement
//!
//! Every call waits at most the read timeout for its reply ([`crate::RedisTimeouts::read`]),
//! and an open at most the connect timeout. A reply lost or late after the script was sent is
//! mapped as the blocking adapter maps it (`codec::store_error`: `Unavailable`): an `issue`
//! whose reply was lost may have stored the token, and the user's retry finds it (200,
//! `created: false`). A call met by `MOVED` (it did not run) or by a connection found dropped
//! well within the read timeout (a socket that died with its node before the call: a stale
//! one after a restart or a failover) is sent again on a fresh connection, at most twice
//! (`STALE_RETRIES`), the `issue` too: its script is idempotent per user, so a second run
//! stores nothing twice, and when it finds the user's token with the random part this call
//! planned, the first run stored it and the call still answers `created: true`. `issue` asks
//! the caller's watch
//! ([`domain::call::CommitWatch::begin_commit`]) right before the script is sent: a caller that
//! gave up (and answered 503) never has it sent.
//!
//! # Issues gathered into one call
//!
//! The issues of one line that the process receives while an `issue` call of that line is
//! out go together in its next call, as a database's transactions share a commit's flush: the script takes them one after the other, as if each were a call of its
//! own, so every guarantee of the crate docs holds per issue (a user twice in one call: the
//! second finds the first's token), and it answers each issue on its own, an error too. A
//! call's fixed cost (the script's start, its reads of the cursor and the counter, its
//! writes of the list, the users and the cursor, a socket write and read at both ends) is
//! shared: on one Redis at 64 connections, Redis spent 10 µs of CPU per issue against 14–19
//! before, and one instance made a third more issues a second (docs/benchmarks.md).
//! An issue that finds no call out is sent at once, so an idle line adds no wait; at most
//! [`ISSUES_PER_CALL`] go in one call. The sender is a task on the runtime of the worker whose
//! issue found none running, sending on that worker's connection until none is waiting. The commit point of
//! each issue (its watch's `begin_commit`) is taken once the call's connection is at hand,
//! right before the call is sent: an issue whose caller gave up by then is answered
//! `Timeout` and not sent, and a failed connect answers 503 with nothing sent. Should the
//! task be dropped (its runtime stopped), its gathered issues answer `Unavailable` and the
//! line's next issue starts a sender anew. Gathering is per process, as the rounds are, not per
//! worker: a call's answer then wakes the other worker too, but at 16 connections a call
//! holds about twice as many issues, and on the 2-vCPU EPYC machine the process made 6–8 %
//! more issues a second with 10–20 % less Redis CPU per issue (docs/benchmarks.md).
//!
//! # Cluster
//!
//! A `REDIS_URL` naming several nodes (comma-separated: a Redis Cluster) gets the crate's async
//! cluster client, one per thread as above: a `redis::cluster_async::ClusterConnection`, which
//! keeps one multiplexed socket per node and routes each script by its first key's slot (every
//! key of a line shares its hash tag). As in the blocking pool (see `pool`), no retries of the
//! crate's own; a script's `SCRIPT LOAD` after `NOSCRIPT` goes to the master of the slot the
//! script was refused on; a call that meets a lost node or a stale route (`MOVED`, `READONLY`)
//! drops its thread's connection only, so the next call reads the slot map anew, and the
//! other masters' lines never notice. A thread whose connection served only other masters'
//! lines through a failover still holds the dead master's socket and the old slot map: its
//! first call into the failed-over line meets the dropped socket (or, once the old master is
//! back as a replica, `MOVED`) and is sent again on a fresh connection, as above, rather than
//! answering 503 after the line recovered (tests/cluster/run.sh found that 503 in two runs of
//! three). Up to twice, the second after 100 ms: a fresh connection reads its slot map from
//! one node, and while the old master rejoins the nodes may not all agree yet; with no pause
//! a call still met `MOVED` on three connections in a row in one run of 22 (cause not found).
//!
//! # Replica confirmations in rounds
//!
//! On a cluster (or with [`RedisConfig::replica_acks`]) an issue is confirmed by `WAIT` before it
//! answers, as in the blocking path (see the crate docs, "Writes a failover must not lose").
//! The issues of one line share it, as a database's transactions share a commit's flush: an
//! issue whose script answered joins the round to be sent next; one round per line is in
//! flight at a time in a process, and when it answers the next is sent for all that joined
//! meanwhile, whichever worker and socket their scripts went on (the read before the `WAIT`,
//! below, puts the round's socket after every write of its master). A round that no replica
//! confirmed in time fails every issue in it with `Unavailable` (503) though their scripts
//! ran, and so does a round that failed in any other way (a `WAIT` Redis refused is no
//! confirmation either, and no 500: the user's retry finds the token); a master found with no
//! replica attached (`ROLE`) confirms without one, and is asked first for 5 s after. A
//! line's rounds are sent by a task on the runtime of the worker whose issue found none in
//! flight, so they wait for that runtime to run it (an HTTP worker's always runs); should the
//! runtime stop first (the worker restarted), the issues waiting in its rounds answer 503 and
//! the line's next issue starts a sender of its own.
//!
//! Redis blocks the socket a `WAIT` was sent on until it answers: every call pipelined behind
//! it waits too. So a thread that confirms issues holds two connections (a *pair*) and sends
//! its calls to the one with no `WAIT` out: a round is sent on the connection of the sending
//! thread's pair that calls were going to, and its calls go to the other from then on, while
//! rounds alternate between the two. Lines on one master (or on one Redis) share the pair, so
//! one line's round can hold another line's calls back. Rounds were first gathered per pair
//! (a worker's issues only); per line, a round at 16 connections holds the issues of both
//! workers (5.6 issues per `WAIT` against 3.2), and the server spent 9–16 % less CPU per issue
//! on a cluster (docs/benchmarks.md), though a round's answer now wakes the other worker too.
//!
//! A round is one pipeline on one socket: an `HMGET` of its tokens' records, then the
//! `WAIT`. `WAIT` counts from the point of the master's replication stream its socket reached
//! with its last command (any command: Redis moves it after reads too), so after the read it
//! covers every earlier write of that master, even if the crate reopened the socket since the
//! scripts ran. The read checks that the master the line's slot maps to now holds every token
//! of the round (its record, with its random part): a round that waited while the slot moved
//! to another master (a failover onto a replica that missed the writes) fails with
//! `Unavailable` instead of being confirmed by that master's replicas, which never saw them;
//! so does a round whose token was retired in the meantime (rare, and the retry answers). A
//! master found alone is read without the `WAIT`. A round met by `MOVED` (its connection's slot
//! map went stale while it waited, or while the connection served other lines through a
//! failover) is sent once more on a connection opened for it: the read tells whether the
//! master it reaches now holds the round's tokens (a slot moved with its keys, as a
//! resharding moves them), and the `WAIT` after it covers them there. The reference
//! deployment test met such rounds: two issues answered 503 in under a millisecond with
//! `MOVED` after the old master came back as a replica. Most likely their connection was
//! opened during the outage, its scripts reached the promoted replica through the crate's
//! fallback within the shard (the master of its map was down), and its round, once the old
//! master was back and reconnected, reached that.

use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::hash::Hash;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::thread::ThreadId;
use std::time::{Duration, Instant};

use domain::call::CommitWatch;
use domain::ids::UserId;
use domain::ports::{AsyncQueueLines, IssueOutcome, StoreError, StoreFuture};
use domain::queue::{QueueCursor, QueueToken, TokenValue};
use domain::room::RoomId;
use redis::aio::MultiplexedConnection;
use redis::cluster_async::ClusterConnection;
use redis::cluster_routing::{Route, RoutingInfo, SingleNodeRoutingInfo, SlotAddr};
use redis::{AsyncConnectionConfig, Cmd, IntoConnectionInfo as _, Pipeline, RedisError, RedisFuture, Value};
use time::OffsetDateTime;
use tokio::sync::{oneshot, watch};

use crate::codec;
use crate::config::{ConfigError, RedisConfig, RedisTimeouts};
use crate::keys::{self, Keys, Place};
use crate::pool::{self, Client};
use crate::scripts::Scripts;

/// The front door's queue calls on Redis without blocking (see the module docs). Cloning is
/// cheap and clones share their connections.
#[derive(Clone)]
pub struct AsyncRedisLines {
    /// A Redis Cluster (see the module docs, "Cluster").
    cluster: bool,
    link: Arc<Link>,
    /// The configured prefix (without braces), from which every line's namespace is made.
    prefix: String,
    scripts: Arc<Scripts>,
    /// Expired tokens' key TTL, in ms (the scripts' `PEXPIRE` argument).
    retain_ms: String,
    redacted_url: String,
    /// Replicas an issue waits for (see the module docs, "Replica confirmations in rounds").
    replica_acks: u32,
    /// Per line (its namespace) whose rounds are being sent: the round of `WAIT` to be sent next.
    rounds: Queues<String, Round>,
    /// Lines whose master was last found with no replica attached, and when.
    alone: Arc<Mutex<HashMap<String, Instant>>>,
    /// Per line (its namespace): the issues gathered for the line's next call (see the module
    /// docs, "Issues gathered into one call").
    gathering: Queues<String, Vec<Gathered>>,
}

/// An issue waiting in its line's gathering for the line's next call.
struct Gathered {
    user: UserId,
    /// The random part of the token the issue plans (24 bytes).
    random: Vec<u8>,
    /// The caller's time, µs.
    now_us: i64,
    watch: CommitWatch,
    answer: oneshot::Sender<Result<IssueOutcome, StoreError>>,
}

/// At most this many issues go in one call; more gathered go in calls of their own, one
/// after the other.
const ISSUES_PER_CALL: usize = 64;

/// What a round of `WAIT` answered every issue in it.
type RoundResult = Option<Result<(), StoreError>>;

/// A line's round to be sent next, if an issue waits for one: the issues whose script answered
/// join it, with where their tokens are stored. A line has an entry in
/// [`AsyncRedisLines::rounds`] exactly while its sender runs ([`Sending`]), which sends the
/// next round when one answers.
type Round = Option<(watch::Sender<RoundResult>, Vec<Place>)>;

/// Work waiting per key, each key's sent by a task of its own: a line's rounds of `WAIT`, a
/// line's issues. A key has an entry exactly while its sender runs.
type Queues<K, V> = Arc<Mutex<HashMap<K, V>>>;

/// The sender of one key's work in [`Queues`], moved into its task before the task is
/// spawned. The task can be dropped before it finished (its runtime stopped: a worker was
/// restarted, or the server shuts down) while work waits in its entry, other workers' issues
/// in a line's round among it. Then the entry goes with it: the waiting work answers
/// `Unavailable` (its answers are dropped), and the key's next work starts a sender of its own
/// instead of joining work nobody sends.
struct Sending<K: Eq + Hash, V> {
    queues: Queues<K, V>,
    key: K,
    done: bool,
}

impl<K: Eq + Hash + Clone, V: Default> Sending<K, V> {
    /// Adds work to the entry of `key` with `add`, which answers what it made; with the
    /// sender to spawn when the key had none running.
    fn join<R>(queues: &Queues<K, V>, key: K, add: impl FnOnce(&mut V) -> R) -> (R, Option<Self>) {
        let mut map = queues.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(waiting) = map.get_mut(&key) {
            return (add(waiting), None);
        }
        let added = add(map.entry(key.clone()).or_default());
        (added, Some(Self { queues: queues.clone(), key, done: false }))
    }

    /// The key's next work, as `take` takes it from the entry; none when `take` finds none,
    /// and then the sender is done (the entry goes, and the next work starts another).
    fn next<T>(&mut self, take: impl FnOnce(&mut V) -> Option<T>) -> Option<T> {
        let mut map = self.queues.lock().unwrap_or_else(PoisonError::into_inner);
        let next = map.get_mut(&self.key).and_then(take);
        if next.is_none() {
            map.remove(&self.key);
            self.done = true;
        }
        next
    }
}

impl<K: Eq + Hash, V> Drop for Sending<K, V> {
    fn drop(&mut self) {
        if !self.done {
            self.queues.lock().unwrap_or_else(PoisonError::into_inner).remove(&self.key);
        }
    }
}

/// How long a line found with no replica attached is asked `ROLE` before `WAIT` (the blocking
/// path's `ALONE_RECHECK`).
const ALONE_RECHECK: Duration = Duration::from_secs(5);

impl fmt::Debug for AsyncRedisLines {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AsyncRedisLines")
            .field("url", &self.redacted_url)
            .field("prefix", &self.prefix)
            .finish_non_exhaustive()
    }
}

/// What the front door connects to.
enum Target {
    One { client: redis::Client, config: AsyncConnectionConfig },
    Cluster(redis::cluster::ClusterClient),
}

/// A thread's connection: to one Redis, or to a cluster (a socket per node, a script routed by
/// its first key's slot). Each call works on a clone; the clones share the sockets.
#[derive(Clone)]
enum Conn {
    One(MultiplexedConnection),
    Cluster {
        conn: ClusterConnection,
        /// The master of the slot this call's last script went to: where its `SCRIPT LOAD`
        /// (after `NOSCRIPT`) goes, as in `pool`.
        last: Option<Route>,
    },
}

impl redis::aio::ConnectionLike for Conn {
    fn req_packed_command<'a>(&'a mut self, cmd: &'a Cmd) -> RedisFuture<'a, Value> {
        match self {
            Self::One(conn) => conn.req_packed_command(cmd),
            Self::Cluster { conn, last } => {
                if let Some(key) = pool::script_key(cmd) {
                    *last = Some(Route::with_key(&key, SlotAddr::Master));
                } else if let (true, Some(route)) = (pool::is_script_load(cmd), *last) {
                    let routing = RoutingInfo::SingleNode(SingleNodeRoutingInfo::SpecificNode(route));
                    return Box::pin(conn.route_command(cmd.clone(), routing));
                }
                conn.req_packed_command(cmd)
            }
        }
    }

    fn req_packed_commands<'a>(
        &'a mut self,
        cmd: &'a Pipeline,
        offset: usize,
        count: usize,
    ) -> RedisFuture<'a, Vec<Value>> {
        match self {
            Self::One(conn) => conn.req_packed_commands(cmd, offset, count),
            Self::Cluster { conn, .. } => conn.req_packed_commands(cmd, offset, count),
        }
    }

    fn get_db(&self) -> i64 {
        match self {
            Self::One(conn) => conn.get_db(),
            Self::Cluster { conn, .. } => conn.get_db(),
        }
    }
}

/// A round of replica confirmation of the line of `k`, for one socket: per bucket of the
/// tokens at `places` an `HMGET` of their records and, with `wait` = (replicas, ms), `WAIT` for
/// that many replicas at most that long after them; and the places in the order the `HMGET`s
/// answer for them.
fn round_pipeline<'a>(k: &Keys, places: &'a [Place], wait: Option<(u32, u64)>) -> (Pipeline, Vec<&'a Place>) {
    let mut buckets: BTreeMap<String, Vec<(String, &Place)>> = BTreeMap::new();
    for place in places {
        let (bucket, field) = k.bucket(place.seq);
        buckets.entry(bucket).or_default().push((field, place));
    }
    let mut round = redis::pipe();
    let mut order = Vec::with_capacity(places.len());
    for (bucket, members) in buckets {
        let mut records = redis::cmd("HMGET");
        records.arg(bucket);
        for (field, place) in members {
            records.arg(field);
            order.push(place);
        }
        round.add_command(records);
    }
    if let Some((replicas, within_ms)) = wait {
        let mut confirm = redis::cmd("WAIT");
        confirm.arg(replicas).arg(within_ms.max(1));
        round.add_command(confirm);
    }
    (round, order)
}

impl Conn {
    /// Sends `pipe` on one Redis, or on a cluster to the master of `key`'s slot: one socket.
    async fn pipeline_on_master_of(&mut self, key: &str, pipe: &Pipeline) -> Result<Vec<Value>, RedisError> {
        match self {
            Self::One(conn) => redis::aio::ConnectionLike::req_packed_commands(conn, pipe, 0, pipe.len()).await,
            Self::Cluster { conn, .. } => {
                let route = SingleNodeRoutingInfo::SpecificNode(Route::with_key(key.as_bytes(), SlotAddr::Master));
                conn.route_pipeline(pipe.clone(), 0, pipe.len(), route).await
            }
        }
    }

    /// Sends `cmd` on one Redis, or on a cluster to the master of `key`'s slot.
    async fn on_master_of(&mut self, key: &str, cmd: Cmd) -> Result<Value, RedisError> {
        match self {
            Self::One(conn) => cmd.query_async(conn).await,
            Self::Cluster { conn, .. } => {
                let route = Route::with_key(key.as_bytes(), SlotAddr::Master);
                conn.route_command(cmd, RoutingInfo::SingleNode(SingleNodeRoutingInfo::SpecificNode(route))).await
            }
        }
    }
}

/// The connections of one thread (see the module docs, "Replica confirmations in rounds"):
/// two when issues are confirmed by replicas, else one twice.
struct Pair {
    conns: [Conn; 2],
    /// The connection calls go to now: the one with no `WAIT` out.
    open: AtomicUsize,
    /// The epoch the pair was opened in.
    epoch: u64,
}

impl Pair {
    /// Which connection calls go to now.
    fn open_side(&self) -> usize {
        self.open.load(Ordering::Acquire) & 1
    }

    /// The connection a call goes to now (a clone: it shares the sockets).
    fn open(&self) -> Conn {
        self.conns[self.open_side()].clone()
    }
}

/// The connections and what is known of Redis' reachability.
struct Link {
    target: Target,
    timeouts: RedisTimeouts,
    /// Each calling thread's connections (see the module docs).
    conns: Mutex<HashMap<ThreadId, Arc<Pair>>>,
    /// Whether a thread opens two connections (issues are confirmed by replicas).
    paired: bool,
    /// Bumped when a connection is found lost; connections of older epochs are not used.
    epoch: AtomicU64,
    /// One connection attempt at a time.
    connecting: tokio::sync::Mutex<()>,
    /// The last attempt to open a connection failed, and nothing has answered since.
    unreachable: AtomicBool,
    /// When the last attempt failed.
    failed_at: Mutex<Option<Instant>>,
    /// When a call last tried to connect while `unreachable`.
    last_probe: Mutex<Option<Instant>>,
}

/// How many times a call that met a stale route or a connection found dropped at once is sent
/// again on a fresh connection (see the module docs, "Timeouts, lost replies, and the commit
/// agreement").
const STALE_RETRIES: u32 = 2;

/// The pause before the second of them.
const STALE_PAUSE: Duration = Duration::from_millis(100);

fn unreachable() -> StoreError {
    StoreError::Unavailable("Redis unreachable: the last connection attempt failed".into())
}

impl Link {
    /// This thread's connections, if it has them of the current epoch.
    fn held(&self) -> Option<Arc<Pair>> {
        let epoch = self.epoch.load(Ordering::Acquire);
        let conns = self.conns.lock().unwrap_or_else(PoisonError::into_inner);
        conns.get(&std::thread::current().id()).filter(|p| p.epoch == epoch).cloned()
    }

    /// Redis answered: calls connect again.
    fn answered(&self) {
        if self.unreachable.load(Ordering::Acquire) {
            self.unreachable.store(false, Ordering::Release);
        }
    }

    /// While unreachable: whether this call may try to connect (one per `probe_interval`).
    fn may_probe(&self) -> bool {
        let mut last = self.last_probe.lock().unwrap_or_else(PoisonError::into_inner);
        let now = Instant::now();
        if last.is_some_and(|t| now.saturating_duration_since(t) < self.timeouts.probe_interval) {
            return false;
        }
        *last = Some(now);
        true
    }

    /// A connection opened in `epoch` was lost: retires it and every other opened before.
    fn lost(&self, epoch: u64) {
        if self.epoch.compare_exchange(epoch, epoch + 1, Ordering::AcqRel, Ordering::Acquire).is_ok() {
            tracing::debug!(epoch = epoch + 1, "a Redis connection was lost; retiring every async connection");
        }
        self.conns.lock().unwrap_or_else(PoisonError::into_inner).retain(|_, h| h.epoch > epoch);
    }

    /// Drops this thread's connection (on a cluster, a node or a route of it was found gone:
    /// the other threads' connections serve the other masters' lines meanwhile).
    fn drop_mine(&self) {
        self.conns.lock().unwrap_or_else(PoisonError::into_inner).remove(&std::thread::current().id());
    }

    /// This thread's connections, opened now if it has none (see the module docs).
    async fn connection(&self) -> Result<Arc<Pair>, StoreError> {
        if let Some(held) = self.held() {
            return Ok(held);
        }
        if self.unreachable.load(Ordering::Acquire) && !self.may_probe() {
            return Err(unreachable());
        }
        let asked = Instant::now();
        let _one_at_a_time = self.connecting.lock().await;
        if let Some(held) = self.held() {
            return Ok(held);
        }
        // An attempt that failed while this call waited for it answers for this call too.
        let failed_at = *self.failed_at.lock().unwrap_or_else(PoisonError::into_inner);
        if failed_at.is_some_and(|at| at >= asked) {
            return Err(unreachable());
        }
        let epoch = self.epoch.load(Ordering::Acquire);
        let opened = match self.open().await {
            Ok(first) if self.paired => self.open().await.map(|second| [first, second]),
            Ok(first) => Ok([first.clone(), first]),
            Err(e) => Err(e),
        };
        match opened {
            Ok(conns) => {
                self.answered();
                let pair = Arc::new(Pair { conns, open: AtomicUsize::new(0), epoch });
                self.conns
                    .lock()
                    .unwrap_or_else(PoisonError::into_inner)
                    .insert(std::thread::current().id(), pair.clone());
                Ok(pair)
            }
            Err(e) => {
                *self.failed_at.lock().unwrap_or_else(PoisonError::into_inner) = Some(Instant::now());
                self.unreachable.store(true, Ordering::Release);
                Err(e)
            }
        }
    }

    /// Opens a connection and proves the server answers (a hung server accepts TCP connections
    /// in its kernel backlog and answers nothing), within the connect timeout.
    async fn open(&self) -> Result<Conn, StoreError> {
        let limit = self.timeouts.connect;
        let attempt = async {
            match &self.target {
                Target::One { client, config } => {
                    let mut conn = client.get_multiplexed_async_connection_with_config(config).await?;
                    redis::cmd("PING").exec_async(&mut conn).await?;
                    Ok::<_, RedisError>(Conn::One(conn))
                }
                // Reading the slot map from a node is the proof that the cluster answers.
                Target::Cluster(client) => Ok(Conn::Cluster { conn: client.get_async_connection().await?, last: None }),
            }
        };
        match tokio::time::timeout(limit, attempt).await {
            Ok(Ok(conn)) => Ok(conn),
            Ok(Err(e)) => Err(StoreError::Unavailable(format!("cannot connect to Redis: {e}"))),
            Err(_elapsed) => {
                Err(StoreError::Unavailable(format!("Redis did not answer a new connection within {limit:?}")))
            }
        }
    }
}

impl AsyncRedisLines {
    /// The async client of the Redis of `cfg`: one Redis, or a Redis Cluster when the URL
    /// names several nodes, comma-separated (see the module docs). Connects lazily, from the
    /// runtime of the thread that first calls: it succeeds when Redis is down.
    ///
    /// # Errors
    /// [`ConfigError`] when the configuration cannot work whatever the server does.
    pub fn new(cfg: &RedisConfig) -> Result<Self, ConfigError> {
        cfg.validate()?;
        let target = if cfg.is_cluster() {
            match Client::new(&cfg.nodes(), &cfg.timeouts).map_err(|e| ConfigError::InvalidUrl(e.to_string()))? {
                Client::Cluster(client) => Target::Cluster(*client),
                Client::Single(_) => return Err(ConfigError::InvalidUrl("a cluster of one node".into())),
            }
        } else {
            let info = cfg.url.as_str().into_connection_info().map_err(|e| ConfigError::InvalidUrl(e.to_string()))?;
            // Nothing sent on connect beyond authentication and `SELECT` (see `pool::Client::new`).
            let settings = info.redis_settings().clone().set_skip_set_lib_name();
            let client = redis::Client::open(info.set_redis_settings(settings))
                .map_err(|e| ConfigError::InvalidUrl(e.to_string()))?;
            let config = AsyncConnectionConfig::new()
                .set_connection_timeout(Some(cfg.timeouts.connect))
                .set_response_timeout(Some(cfg.timeouts.read));
            Target::One { client, config }
        };
        let link = Link {
            target,
            timeouts: cfg.timeouts,
            conns: Mutex::default(),
            paired: cfg.effective_replica_acks() > 0,
            epoch: AtomicU64::new(0),
            connecting: tokio::sync::Mutex::new(()),
            unreachable: AtomicBool::new(false),
            failed_at: Mutex::new(None),
            last_probe: Mutex::new(None),
        };
        Ok(Self {
            cluster: cfg.is_cluster(),
            link: Arc::new(link),
            prefix: cfg.prefix.clone(),
            scripts: Arc::new(Scripts::new()),
            retain_ms: cfg.expired_retention.as_millis().max(1).to_string(),
            redacted_url: cfg.redacted_url(),
            replica_acks: cfg.effective_replica_acks(),
            rounds: Arc::default(),
            alone: Arc::default(),
            gathering: Arc::default(),
        })
    }

    /// Maps a failed call's error, retiring its connection when it is lost: on one Redis every
    /// connection opened before it (the server restarted), on a cluster this thread's only (a
    /// node, or the slot map, changed; see the module docs, "Cluster").
    fn failed(&self, e: &RedisError, epoch: u64) -> StoreError {
        if self.cluster {
            if codec::connection_lost(e) || codec::stale_route(e) {
                self.link.drop_mine();
            }
        } else if codec::connection_lost(e) {
            self.link.lost(epoch);
        }
        codec::store_error(e)
    }

    /// After an issue's script answered with the token at `place`: waits for its line's round of
    /// `WAIT` to be confirmed (see the module docs, "Replica confirmations in rounds").
    async fn confirm(&self, k: &Keys, place: Place) -> Result<(), StoreError> {
        if self.replica_acks == 0 {
            return Ok(());
        }
        let (mut answer, sending) = Sending::join(&self.rounds, k.namespace.clone(), |round| {
            let (sender, places) = round.get_or_insert_with(|| (watch::channel(None).0, Vec::new()));
            places.push(place);
            sender.subscribe()
        });
        if let Some(sending) = sending {
            let (this, k) = (self.clone(), k.clone());
            tokio::spawn(async move { this.send_rounds(k, sending).await });
        }
        let answered = answer.wait_for(Option::is_some).await;
        match answered.as_deref() {
            Ok(Some(result)) => result.clone(),
            _ => Err(StoreError::Unavailable("the replica confirmation was abandoned".into())),
        }
    }

    /// Sends the rounds of the line of `k` one after the other until none is waiting, each on
    /// the connection of this thread's pair that calls go to, which they leave for the other
    /// while its `WAIT` is out.
    async fn send_rounds(self, k: Keys, mut sending: Sending<String, Round>) {
        while let Some((round, places)) = sending.next(Option::take) {
            // Whatever failed, the round's issues are not confirmed: their scripts ran, and the
            // user's retry finds the token (503), never a 500 for a refused `WAIT` or read.
            let sent = async {
                let pair = self.link.connection().await?;
                let side = pair.open_side();
                pair.open.store(1 - side, Ordering::Release);
                self.replicas_confirm(&mut pair.conns[side].clone(), &k, &places, pair.epoch).await
            };
            let result = sent.await.map_err(|e| match e {
                StoreError::Internal(cause) => {
                    StoreError::Unavailable(format!("a round of replica confirmation failed: {cause}"))
                }
                other => other,
            });
            round.send_replace(Some(result));
        }
    }

    /// One round on `conn`, on the master the line of `k` maps to now: the records of the
    /// tokens at `places`, then `WAIT`, in one pipeline (see the module docs, "Replica
    /// confirmations in rounds", for why both, and why on one socket).
    async fn replicas_confirm(
        &self,
        conn: &mut Conn,
        k: &Keys,
        places: &[Place],
        epoch: u64,
    ) -> Result<(), StoreError> {
        let cursor = &k.cursor;
        let alone_lately = self
            .alone
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .get(cursor)
            .is_some_and(|at| at.elapsed() < ALONE_RECHECK);
        if alone_lately {
            if self.attached_replicas(conn, cursor, epoch).await? == 0 {
                // No replica to wait for; the tokens must still be on this master.
                self.send_round(conn, k, places, None, epoch).await?;
                return Ok(());
            }
            self.alone.lock().unwrap_or_else(PoisonError::into_inner).remove(cursor);
        }
        // Well inside the response timeout, so a slow `WAIT` is never taken for a lost socket.
        let within = self.link.timeouts.replica_ack.min(self.link.timeouts.read / 2);
        let wait = (self.replica_acks, u64::try_from(within.as_millis()).unwrap_or(u64::MAX));
        let acked = self.send_round(conn, k, places, Some(wait), epoch).await?;
        if acked >= self.replica_acks {
            return Ok(());
        }
        // A master with no replica attached has none a failover could promote without these
        // writes (see the blocking path's `confirm`).
        if self.attached_replicas(conn, cursor, epoch).await? == 0 {
            return Ok(());
        }
        Err(StoreError::Unavailable(format!(
            "the write was not confirmed by {} replica(s) within {within:?} ({acked} did)",
            self.replica_acks
        )))
    }

    /// Sends a round ([`round_pipeline`]) on `conn` to the master of `k`'s line: fails with
    /// `Unavailable` when a token of `places` is not stored there; else how many replicas its
    /// `WAIT` counted (0 without one). A round met by `MOVED` (it did not run: `conn`'s slot
    /// map is stale) is sent again, once, on a connection opened for it, which reads the map
    /// anew: its read checks the tokens on the master it reaches, and the `WAIT` after that
    /// read covers that master's writes whatever socket it goes on (see the module docs).
    async fn send_round(
        &self,
        conn: &mut Conn,
        k: &Keys,
        places: &[Place],
        wait: Option<(u32, u64)>,
        epoch: u64,
    ) -> Result<u32, StoreError> {
        let (round, order) = round_pipeline(k, places, wait);
        let mut fresh: Option<Conn> = None;
        let replies = loop {
            let on = match fresh.as_mut() {
                Some(opened) => opened,
                None => &mut *conn,
            };
            let sent = on.pipeline_on_master_of(&k.cursor, &round).await;
            let moved = match &sent {
                Err(e) => codec::moved(e).then(|| e.clone()),
                Ok(replies) => replies.first().cloned().and_then(|v| v.extract_error().err()).filter(codec::moved),
            };
            match (sent, moved) {
                (_, Some(e)) if fresh.is_none() => {
                    let _ = self.failed(&e, epoch);
                    fresh = Some(self.link.open().await?);
                }
                (Ok(replies), _) => break replies,
                (Err(e), _) => return Err(self.failed(&e, epoch)),
            }
        };
        let mut replies = replies.into_iter().map(Value::extract_error);
        let mut order = order.into_iter();
        for _ in 0..round.len() - usize::from(wait.is_some()) {
            let records = replies.next().ok_or_else(|| codec::corrupt("a round's reply"))?;
            let records: Vec<Option<Vec<u8>>> = records
                .and_then(|v| Ok(redis::from_redis_value(v)?))
                .map_err(|e: RedisError| self.failed(&e, epoch))?;
            for record in records {
                let place = order.next().ok_or_else(|| codec::corrupt("a round's reply"))?;
                if record.as_deref().and_then(|r| r.get(..place.random.len())) != Some(&place.random[..]) {
                    return Err(StoreError::Unavailable(format!(
                        "the token of seq {} is not stored on the master its line maps to now (a failover?)",
                        place.seq
                    )));
                }
            }
        }
        match replies.next() {
            None => Ok(0),
            Some(acked) => acked.and_then(|v| Ok(redis::from_redis_value(v)?)).map_err(|e| self.failed(&e, epoch)),
        }
    }

    /// How many replicas the master of the line of `cursor` has attached (`ROLE`); a master
    /// with none is remembered for [`ALONE_RECHECK`].
    async fn attached_replicas(&self, conn: &mut Conn, cursor: &str, epoch: u64) -> Result<u32, StoreError> {
        let attached = conn
            .on_master_of(cursor, redis::cmd("ROLE"))
            .await
            .and_then(pool::replicas_in_role)
            .map_err(|e| self.failed(&e, epoch))?;
        if attached == 0 {
            tracing::warn!(line = %cursor, "the Redis master of this line has no replica attached: its writes are not confirmed by any");
            self.alone.lock().unwrap_or_else(PoisonError::into_inner).insert(cursor.to_owned(), Instant::now());
        }
        Ok(attached)
    }

    async fn issue_in(
        &self,
        room: &RoomId,
        user: UserId,
        value: TokenValue,
        now: OffsetDateTime,
        watch: &CommitWatch,
    ) -> Result<IssueOutcome, StoreError> {
        if !value.is_in(room) {
            return Err(StoreError::Internal(format!("a token of another room issued in the line of {room}")));
        }
        if watch.abandoned() {
            return Err(StoreError::Timeout("the caller gave up before the write was sent".into()));
        }
        let random = keys::random_part(&value).ok_or_else(|| codec::corrupt("a planned token value"))?;
        let k = Keys::new(&self.prefix, room);
        let (answer, outcome) = oneshot::channel();
        let issue = Gathered { user, random, now_us: codec::to_micros(now), watch: watch.clone(), answer };
        let ((), sending) = Sending::join(&self.gathering, k.namespace.clone(), |issues| issues.push(issue));
        if let Some(sending) = sending {
            let (this, k, room) = (self.clone(), k.clone(), room.clone());
            tokio::spawn(async move { this.send_issues(k, room, sending).await });
        }
        let outcome = outcome
            .await
            .map_err(|_| StoreError::Unavailable("the call of a gathered issue was abandoned".into()))??;
        // Also when the user's token was found: the call that stored it may have failed this
        // very confirmation, and a 200 must not hand out a token a failover can lose.
        if self.replica_acks > 0 {
            let place = k.place(&outcome.token.value).ok_or_else(|| codec::corrupt("an issued token's value"))?;
            self.confirm(&k, place).await?;
        }
        Ok(outcome)
    }

    /// Sends the gathered issues of `room`'s line (of keys `k`; see the module docs, "Issues
    /// gathered into one call"), one call at a time, each with every issue gathered while the
    /// one before was out (at most [`ISSUES_PER_CALL`] a call), until none is waiting.
    async fn send_issues(self, k: Keys, room: RoomId, mut sending: Sending<String, Vec<Gathered>>) {
        while let Some(mut issues) = sending.next(|issues| (!issues.is_empty()).then(|| std::mem::take(issues))) {
            while !issues.is_empty() {
                let call = issues.drain(..issues.len().min(ISSUES_PER_CALL)).collect();
                self.send_call(&k, &room, call).await;
            }
        }
    }

    /// One call of the `issue` script for `issues` of `room`'s line (of keys `k`), each
    /// answered its outcome. Sent again when it met a stale route (it did not run) or a
    /// connection found dropped quickly (see the module docs, "Cluster", for why that is safe).
    async fn send_call(&self, k: &Keys, room: &RoomId, mut issues: Vec<Gathered>) {
        let started = Instant::now();
        let mut retries = 0;
        let replies = loop {
            let pair = match self.link.connection().await {
                Ok(pair) => pair,
                Err(e) => break Err(e),
            };
            // The commit point of each issue, once a connection is at hand (see the module
            // docs): an issue whose caller went is not sent, nor one whose caller gave up
            // (answered `Timeout`). A resend is part of the same commit.
            if retries == 0 {
                let (committing, gave_up): (Vec<_>, Vec<_>) = issues
                    .into_iter()
                    .filter(|issue| !issue.answer.is_closed())
                    .partition(|issue| issue.watch.begin_commit());
                for issue in gave_up {
                    let nothing_sent = StoreError::Timeout("the caller gave up before the write was sent".into());
                    let _ = issue.answer.send(Err(nothing_sent));
                }
                issues = committing;
                if issues.is_empty() {
                    return;
                }
            }
            let call =
                self.scripts.issue_call(k, &self.retain_ms, issues.iter().map(|i| (i.user, &i.random[..], i.now_us)));
            match call.invoke_async::<Vec<codec::Reply>>(&mut pair.open()).await {
                Ok(replies) => break Ok(replies),
                Err(e) => {
                    if !self.resend_after(&e, pair.epoch, started, &mut retries).await {
                        break Err(self.failed(&e, pair.epoch));
                    }
                }
            }
        };
        let outcomes = replies.and_then(|replies| {
            self.link.answered();
            let asked: Vec<codec::Asked<'_>> = issues
                .iter()
                .map(|i| codec::Asked { room, user: i.user, random: &i.random, issued_us: i.now_us })
                .collect();
            codec::issue_outcomes(&replies, &asked)
        });
        match outcomes {
            Ok(outcomes) => {
                for (issue, outcome) in issues.into_iter().zip(outcomes) {
                    // The token a resent call found is the first attempt's when it carries this
                    // issue's random part (its `seq` is the line's).
                    let outcome = outcome.map(|mut found| {
                        if retries > 0 && !found.created && keys::random_part(&found.token.value) == Some(issue.random)
                        {
                            found.created = true;
                        }
                        found
                    });
                    let _ = issue.answer.send(outcome);
                }
            }
            Err(e) => {
                for issue in issues {
                    let _ = issue.answer.send(Err(e.clone()));
                }
            }
        }
    }

    /// Whether a call that failed with `e` on a connection of `epoch`, `started` ago, is sent
    /// again on a fresh connection: when it met a stale route (`MOVED`: it did not run) or a
    /// connection found dropped well within the read timeout (a socket that died with its
    /// node before the call), at most [`STALE_RETRIES`] times. If so, its connection is dropped
    /// (the next reads the slot map anew) and, before the second, [`STALE_PAUSE`] passes for
    /// the cluster's nodes to agree on the new map (see the module docs, "Cluster").
    async fn resend_after(&self, e: &RedisError, epoch: u64, started: Instant, retries: &mut u32) -> bool {
        let stale = codec::moved(e) || (e.is_connection_dropped() && started.elapsed() < self.link.timeouts.read);
        if !stale || *retries >= STALE_RETRIES {
            return false;
        }
        let _ = self.failed(e, epoch);
        *retries += 1;
        if *retries > 1 {
            tokio::time::sleep(STALE_PAUSE).await;
        }
        true
    }

    async fn find_with_cursor_in(
        &self,
        room: &RoomId,
        value: &TokenValue,
    ) -> Result<Option<(QueueToken, QueueCursor)>, StoreError> {
        if !value.is_in(room) {
            return Ok(None);
        }
        let k = Keys::new(&self.prefix, room);
        let Some(place) = k.place(value) else { return Ok(None) };
        let started = Instant::now();
        let mut retries = 0;
        let reply = loop {
            let pair = self.link.connection().await?;
            let mut conn = pair.open();
            let epoch = pair.epoch;
            let sent = self.scripts.find_call(&k, &place, true).invoke_async::<Option<codec::Reply>>(&mut conn).await;
            match sent {
                Ok(reply) => break reply,
                // A read changes nothing: sent again when an attempt met a stale route or a
                // dropped connection quickly (a stale one after a restart).
                Err(e) => {
                    if !self.resend_after(&e, epoch, started, &mut retries).await {
                        return Err(self.failed(&e, epoch));
                    }
                }
            }
        };
        self.link.answered();
        reply.map(|f| Ok((codec::token(value.clone(), &f, 0)?, codec::cursor(&f, codec::TOKEN_FIELDS)?))).transpose()
    }

    /// Redis answered another client of this process (the blocking pool's readiness `PING`):
    /// calls stop failing at once and connect again. Without it, the first calls after Redis
    /// is back could still be refused until the next probe, up to `probe_interval` after the
    /// instance reported ready.
    pub fn redis_answered(&self) {
        self.link.answered();
    }

    /// Drops every connection of every thread (tests: the next calls connect again).
    #[doc(hidden)]
    pub fn disconnect_all(&self) {
        let epoch = self.link.epoch.load(Ordering::Acquire);
        self.link.lost(epoch);
    }

    /// How long a call may wait for its reply.
    #[must_use]
    pub fn read_timeout(&self) -> Duration {
        self.link.timeouts.read
    }
}

impl AsyncQueueLines for AsyncRedisLines {
    fn issue<'a>(
        &'a self,
        room: &'a RoomId,
        user: UserId,
        value: TokenValue,
        now: OffsetDateTime,
        watch: &'a CommitWatch,
    ) -> StoreFuture<'a, IssueOutcome> {
        Box::pin(self.issue_in(room, user, value, now, watch))
    }

    fn find_with_cursor<'a>(
        &'a self,
        room: &'a RoomId,
        value: &'a TokenValue,
    ) -> StoreFuture<'a, Option<(QueueToken, QueueCursor)>> {
        Box::pin(self.find_with_cursor_in(room, value))
    }
}
