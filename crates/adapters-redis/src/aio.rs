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
//! whose issues replicas confirm holds two (see "Replica confirmations").
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
//! out go together in its next call, as a database's transactions share a commit's flush:
//! the script takes them one after the other, as if each were a call of its own, so every
//! guarantee of the crate docs holds per issue (a user twice in one call: the second finds
//! the first's token), and it answers each issue on its own, an error too. A
//! call's fixed cost (the script's start, its reads of the cursor and the counter, its
//! writes of the list, the users and the cursor, a socket write and read at both ends) is
//! shared: on one Redis at 64 connections, Redis spent 10 µs of CPU per issue against 14–19
//! before, and one instance made a third more issues a second (docs/benchmarks.md).
//! An issue that finds no call out is sent at once, so an idle line adds no wait; at most
//! [`ISSUES_PER_CALL`] go in one call. The sender is a task on the runtime of the worker whose
//! issue found none running, sending on that worker's connection until none is waiting. The
//! commit point of each issue (its watch's `begin_commit`) is taken once the call's
//! connection is at hand, right before the call is sent: an issue whose caller gave up by
//! then is answered `Timeout` and not sent, and a failed connect answers 503 with nothing
//! sent. Should the
//! task be dropped (its runtime stopped), its gathered issues answer `Unavailable` and the
//! line's next issue starts a sender anew. Gathering is per process, not per worker: a
//! call's answer then wakes the other worker too, but at 16 connections a call holds about
//! twice as many issues, and on the 2-vCPU EPYC machine the process made 6–8 %
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
//! # Replica confirmations
//!
//! On a cluster (or with [`RedisConfig::replica_acks`]) an issue is confirmed by `WAIT` before it
//! answers, as in the blocking path (see the crate docs, "Writes a failover must not lose"):
//! each `issue` call is one pipeline on one socket to the master of its line's slot, the script
//! and right after it `WAIT`, so one `WAIT` confirms every issue of the call, as a database's
//! commit flushes every transaction that joined it. The call's issues answer only once it
//! returned; a call that no replica confirmed in time fails every issue in it with
//! `Unavailable` (503) though the script ran (the user's retry finds the token), and so does a
//! `WAIT` Redis refused (never a 500). A token the script found, not made, is confirmed too:
//! the call that stored it may have failed its own confirmation, and a 200 must not hand out a
//! token a failover can lose. `WAIT` counts the replicas that reached the point of the master's
//! replication stream its socket was at after its last command, any command, reads too
//! (checked on Redis 7.0: with the only replica frozen, `WAIT 1` after a `GET` or after a script
//! that only read waits out its timeout), so after the script it covers every write the master
//! ran before, a found token's included. A master found with no replica attached (`ROLE`)
//! confirms without one, and for 5 s after is asked `ROLE` in `WAIT`'s place.
//!
//! Why script and `WAIT` share one pipeline rather than a `WAIT` per line sent once scripts
//! answered (the design before, "rounds", which read the tokens' records before its `WAIT`
//! because it could go on another socket): on one socket, in one write, nothing can come
//! between them. The crate cannot reopen the socket between the two (the pipeline fails
//! whole), and a slot that moved answers the script `MOVED` (it did not run; the call is sent
//! again, see "Cluster") rather than letting a `WAIT` be confirmed by the replicas of a master
//! that never held the tokens. An issue then waits for one round trip, not for a script and a
//! round; on the 2-vCPU EPYC machine one instance on the cluster made 10,200 issues a second
//! at 16 connections against 6,700 with rounds, 0.81 of one Redis (docs/benchmarks.md).
//! A script refused with `NOSCRIPT` (a restarted or promoted master) is loaded there and sent
//! again once; the `WAIT` sent after the refused one ran for nothing, and when it answered
//! short the master is asked `ROLE` first, so that a promoted master with no replica yet is not
//! waited on twice.
//!
//! Redis blocks the socket a `WAIT` was sent on until it answers: every call pipelined behind
//! it waits too. So a thread that confirms issues holds two connections (a *pair*): an `issue`
//! call goes on the one calls were going to, and the thread's calls go to the other from then
//! on, while issue calls alternate between the two. One call per line is out at a time in a
//! process ("Issues gathered into one call"); lines on one master (or on one Redis) share the
//! pair, so one line's `WAIT` can hold another line's call back.

use std::collections::HashMap;
use std::fmt;
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
use tokio::sync::oneshot;

use crate::codec;
use crate::config::{ConfigError, RedisConfig, RedisTimeouts};
use crate::keys::{self, Keys};
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
    /// Replicas an issue waits for (see the module docs, "Replica confirmations").
    replica_acks: u32,
    /// Lines whose master was last found with no replica attached, and when.
    alone: Arc<Mutex<HashMap<String, Instant>>>,
    /// Per line (its namespace): the issues gathered for the line's next call (see the module
    /// docs, "Issues gathered into one call").
    gathering: Gathering,
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

/// Per line (its namespace), the issues gathered for its next call. A line has an entry
/// exactly while its sender runs.
type Gathering = Arc<Mutex<HashMap<String, Vec<Gathered>>>>;

/// The sender of one line's gathered issues ([`AsyncRedisLines::send_issues`]), moved into its
/// task before the task is spawned. The task can be dropped before it finished (its runtime
/// stopped: a worker was restarted, or the server shuts down) while issues wait in its line's
/// entry, other workers' among them. Then the entry goes with it: the waiting issues answer
/// `Unavailable` (their answers are dropped), and the line's next issue starts a sender of its
/// own instead of joining issues nobody sends.
struct Sending {
    gathering: Gathering,
    line: String,
    done: bool,
}

impl Sending {
    /// Gathers `issue` for the next call of `line`; with the sender to spawn when the line had
    /// none running.
    fn join(gathering: &Gathering, line: &str, issue: Gathered) -> Option<Self> {
        let mut map = gathering.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(waiting) = map.get_mut(line) {
            waiting.push(issue);
            return None;
        }
        map.insert(line.to_owned(), vec![issue]);
        Some(Self { gathering: gathering.clone(), line: line.to_owned(), done: false })
    }

    /// Every issue gathered since the last call, leaving none; none when none was, and then
    /// the sender is done (the entry goes, and the line's next issue starts another).
    fn next(&mut self) -> Option<Vec<Gathered>> {
        let mut map = self.gathering.lock().unwrap_or_else(PoisonError::into_inner);
        let next = map.get_mut(&self.line).map(std::mem::take).filter(|issues| !issues.is_empty());
        if next.is_none() {
            map.remove(&self.line);
            self.done = true;
        }
        next
    }
}

impl Drop for Sending {
    fn drop(&mut self) {
        if !self.done {
            self.gathering.lock().unwrap_or_else(PoisonError::into_inner).remove(&self.line);
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

    /// Loads `script` on one Redis, or on a cluster on the master of `key`'s slot (as `pool`
    /// does after `NOSCRIPT`).
    async fn load_on_master_of(&mut self, key: &str, script: &redis::Script) -> Result<(), RedisError> {
        if let Self::Cluster { last, .. } = self {
            *last = Some(Route::with_key(key.as_bytes(), SlotAddr::Master));
        }
        script.load_async(self).await.map(drop)
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

/// The connections of one thread (see the module docs, "Replica confirmations"):
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
        if let Some(sending) = Sending::join(&self.gathering, &k.namespace, issue) {
            let (this, k, room) = (self.clone(), k.clone(), room.clone());
            tokio::spawn(async move { this.send_issues(k, room, sending).await });
        }
        outcome.await.map_err(|_| StoreError::Unavailable("the call of a gathered issue was abandoned".into()))?
    }

    /// Sends the gathered issues of `room`'s line (of keys `k`; see the module docs, "Issues
    /// gathered into one call"), one call at a time, each with every issue gathered while the
    /// one before was out (at most [`ISSUES_PER_CALL`] a call), until none is waiting.
    async fn send_issues(self, k: Keys, room: RoomId, mut sending: Sending) {
        while let Some(mut issues) = sending.next() {
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
            let eval =
                self.scripts.issue_eval(k, &self.retain_ms, issues.iter().map(|i| (i.user, &i.random[..], i.now_us)));
            match self.issue_on(&pair, k, eval).await {
                Ok(replies) => break Ok(replies),
                Err(e) => {
                    if !self.resend_after(&e, pair.epoch, started, &mut retries).await {
                        break Err(self.failed(&e, pair.epoch));
                    }
                }
            }
        };
        let outcomes = replies.and_then(|(replies, confirmed)| {
            self.link.answered();
            let asked: Vec<codec::Asked<'_>> = issues
                .iter()
                .map(|i| codec::Asked { room, user: i.user, random: &i.random, issued_us: i.now_us })
                .collect();
            Ok((codec::issue_outcomes(&replies, &asked)?, confirmed))
        });
        match outcomes {
            Ok((outcomes, confirmed)) => {
                for (issue, outcome) in issues.into_iter().zip(outcomes) {
                    // A token found too: the call that stored it may have failed its own
                    // confirmation, and a 200 must not hand out a token a failover can lose.
                    let outcome = outcome.and_then(|found| confirmed.clone().map(|()| found));
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

    /// Sends one `issue` call (`eval`) to the master of the line of `k`, on one socket of this
    /// thread's `pair`, followed there, when replicas confirm issues, by `WAIT` (by `ROLE` for a
    /// master found alone lately): see the module docs, "Replica confirmations". Loads the
    /// script there and sends again once on `NOSCRIPT`. Answers the script's replies and
    /// whether its writes are confirmed; fails (with nothing known to have run) when the call
    /// failed or the script was refused.
    async fn issue_on(
        &self,
        pair: &Pair,
        k: &Keys,
        eval: Cmd,
    ) -> Result<(Vec<codec::Reply>, Result<(), StoreError>), RedisError> {
        let cursor = &k.cursor;
        let alone_lately = || {
            let alone = self.alone.lock().unwrap_or_else(PoisonError::into_inner);
            alone.get(cursor).is_some_and(|at| at.elapsed() < ALONE_RECHECK)
        };
        // Well inside the response timeout, so a slow `WAIT` is never taken for a lost socket.
        let within = self.link.timeouts.replica_ack.min(self.link.timeouts.read / 2).as_millis().max(1);
        let confirm = || match self.replica_acks {
            0 => None,
            _ if alone_lately() => Some(redis::cmd("ROLE")),
            acks => Some(redis::cmd("WAIT").arg(acks).arg(within).to_owned()),
        };
        let mut conn = if self.replica_acks > 0 {
            // Redis holds what is sent after a `WAIT` on its socket until the `WAIT` answers:
            // this thread's calls go to the pair's other socket meanwhile.
            let side = pair.open_side();
            pair.open.store(1 - side, Ordering::Release);
            pair.conns[side].clone()
        } else {
            pair.open()
        };
        let mut loaded = false;
        let (script, confirmation) = loop {
            let mut pipe = redis::pipe();
            pipe.add_command(eval.clone());
            if let Some(confirm) = confirm() {
                pipe.add_command(confirm);
            }
            let mut replies = conn.pipeline_on_master_of(cursor, &pipe).await?.into_iter();
            let (script, confirmation) = (replies.next(), replies.next());
            let script = script.ok_or_else(|| RedisError::from((redis::ErrorKind::Parse, "no reply to a script")))?;
            match script.extract_error() {
                Err(e) if !loaded && e.kind() == redis::ErrorKind::Server(redis::ServerErrorKind::NoScript) => {
                    // The `WAIT` after it ran for nothing. A master that answered it short may
                    // have no replica (a promoted one, which also lacks the script): asked
                    // now, so that the call sent again is not held by a `WAIT` as long.
                    if confirmation.is_some_and(|c| matches!(c, Value::Int(n) if n < i64::from(self.replica_acks))) {
                        // Only a shortcut: a failed `ROLE` leaves the call as it was.
                        let _ = self.attached_replicas(&mut conn, cursor, pair.epoch).await;
                    }
                    conn.load_on_master_of(cursor, &self.scripts.issue).await?;
                    loaded = true;
                }
                Err(e) => return Err(e),
                Ok(script) => break (redis::from_redis_value::<Vec<codec::Reply>>(script)?, confirmation),
            }
        };
        let confirmed = match confirmation {
            None => Ok(()),
            Some(confirmation) => self.confirmed(&mut conn, cursor, confirmation, pair.epoch).await,
        };
        Ok((script, confirmed))
    }

    /// Whether the replicas of the master of the line of `cursor` confirmed a call's writes,
    /// from what its `WAIT` (or, for a master found alone lately, its `ROLE`) answered. Not
    /// confirmed is `Unavailable` (503), also when Redis refused the `WAIT` (never a 500: the
    /// user's retry finds the token).
    async fn confirmed(&self, conn: &mut Conn, cursor: &str, answer: Value, epoch: u64) -> Result<(), StoreError> {
        let unconfirmed = |e: RedisError| StoreError::Unavailable(format!("the write was not confirmed: {e}"));
        let answer = answer.extract_error().map_err(unconfirmed)?;
        if let Value::Array(_) = answer {
            // `ROLE`: a master still alone has no replica to wait for.
            if pool::replicas_in_role(answer).map_err(unconfirmed)? == 0 {
                return Ok(());
            }
            self.alone.lock().unwrap_or_else(PoisonError::into_inner).remove(cursor);
            return Err(StoreError::Unavailable(
                "the master of this line has a replica attached again; the write was not confirmed by it".into(),
            ));
        }
        let acked: u32 = redis::from_redis_value(answer).map_err(|e| unconfirmed(e.into()))?;
        if acked >= self.replica_acks {
            return Ok(());
        }
        // A master with no replica attached has none a failover could promote without these
        // writes (see the blocking path's `confirm`).
        if self.attached_replicas(conn, cursor, epoch).await? == 0 {
            return Ok(());
        }
        Err(StoreError::Unavailable(format!(
            "the write was not confirmed by {} replica(s) in time ({acked} did)",
            self.replica_acks
        )))
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
