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
//! multiplexed connection pipelines every call of its worker, so no pool is needed.
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
//! mapped as the blocking adapter maps it (`codec::store_error`: `Unavailable`): writes are
//! never retried, so an `issue` whose reply was lost may have stored the token, and the user's
//! retry finds it (200, `created: false`); a read met by a connection dropped quickly is retried
//! once on a fresh connection. `issue` asks the caller's watch
//! ([`domain::call::CommitWatch::begin_commit`]) right before the script is sent: a caller that
//! gave up (and answered 503) never has it sent.
//!
//! # Cluster
//!
//! A `REDIS_URL` naming several nodes (comma-separated: a Redis Cluster) gets no async client
//! here: [`AsyncRedisLines::new`] answers `None` and the app serves the front door through the
//! blocking pool, as before.

use std::collections::HashMap;
use std::fmt;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::thread::ThreadId;
use std::time::{Duration, Instant};

use domain::call::CommitWatch;
use domain::ids::UserId;
use domain::ports::{AsyncQueueLines, IssueOutcome, StoreError, StoreFuture};
use domain::queue::{QueueCursor, QueueToken, TokenValue};
use domain::room::RoomId;
use redis::aio::MultiplexedConnection;
use redis::{AsyncConnectionConfig, IntoConnectionInfo as _, RedisError};
use time::OffsetDateTime;

use crate::codec;
use crate::config::{ConfigError, RedisConfig, RedisTimeouts};
use crate::keys::{self, Keys};
use crate::scripts::Scripts;

/// The front door's queue calls on Redis without blocking (see the module docs). Cloning is
/// cheap and clones share their connections.
#[derive(Clone)]
pub struct AsyncRedisLines {
    link: Arc<Link>,
    /// The configured prefix (without braces), from which every line's namespace is made.
    prefix: String,
    scripts: Arc<Scripts>,
    /// Expired tokens' key TTL, in ms (the scripts' `PEXPIRE` argument).
    retain_ms: String,
    redacted_url: String,
}

impl fmt::Debug for AsyncRedisLines {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AsyncRedisLines")
            .field("url", &self.redacted_url)
            .field("prefix", &self.prefix)
            .finish_non_exhaustive()
    }
}

/// A connection of one thread, and the epoch it was opened in.
struct Held {
    conn: MultiplexedConnection,
    epoch: u64,
}

/// The connections and what is known of Redis' reachability.
struct Link {
    client: redis::Client,
    config: AsyncConnectionConfig,
    timeouts: RedisTimeouts,
    /// Each calling thread's connection (see the module docs).
    conns: Mutex<HashMap<ThreadId, Held>>,
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

fn unreachable() -> StoreError {
    StoreError::Unavailable("Redis unreachable: the last connection attempt failed".into())
}

impl Link {
    /// This thread's connection, if it has one of the current epoch.
    fn held(&self) -> Option<(MultiplexedConnection, u64)> {
        let epoch = self.epoch.load(Ordering::Acquire);
        let conns = self.conns.lock().unwrap_or_else(PoisonError::into_inner);
        conns.get(&std::thread::current().id()).filter(|h| h.epoch == epoch).map(|h| (h.conn.clone(), h.epoch))
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

    /// This thread's connection, opened now if it has none (see the module docs).
    async fn connection(&self) -> Result<(MultiplexedConnection, u64), StoreError> {
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
        match self.open().await {
            Ok(conn) => {
                self.answered();
                let mut conns = self.conns.lock().unwrap_or_else(PoisonError::into_inner);
                conns.insert(std::thread::current().id(), Held { conn: conn.clone(), epoch });
                Ok((conn, epoch))
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
    async fn open(&self) -> Result<MultiplexedConnection, StoreError> {
        let limit = self.timeouts.connect;
        let attempt = async {
            let mut conn = self.client.get_multiplexed_async_connection_with_config(&self.config).await?;
            redis::cmd("PING").exec_async(&mut conn).await?;
            Ok::<_, RedisError>(conn)
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
    /// The async client of the Redis of `cfg`, or `None` for a cluster URL (several nodes,
    /// comma-separated: the blocking path serves then, see the module docs). Connects lazily,
    /// from the runtime of the thread that first calls: it succeeds when Redis is down.
    ///
    /// # Errors
    /// [`ConfigError`] when the configuration cannot work whatever the server does.
    pub fn new(cfg: &RedisConfig) -> Result<Option<Self>, ConfigError> {
        if cfg.is_cluster() {
            return Ok(None);
        }
        cfg.validate()?;
        let info = cfg.url.as_str().into_connection_info().map_err(|e| ConfigError::InvalidUrl(e.to_string()))?;
        // Nothing sent on connect beyond authentication and `SELECT` (see `pool::Manager::client`).
        let settings = info.redis_settings().clone().set_skip_set_lib_name();
        let client = redis::Client::open(info.set_redis_settings(settings))
            .map_err(|e| ConfigError::InvalidUrl(e.to_string()))?;
        let config = AsyncConnectionConfig::new()
            .set_connection_timeout(Some(cfg.timeouts.connect))
            .set_response_timeout(Some(cfg.timeouts.read));
        let link = Link {
            client,
            config,
            timeouts: cfg.timeouts,
            conns: Mutex::default(),
            epoch: AtomicU64::new(0),
            connecting: tokio::sync::Mutex::new(()),
            unreachable: AtomicBool::new(false),
            failed_at: Mutex::new(None),
            last_probe: Mutex::new(None),
        };
        Ok(Some(Self {
            link: Arc::new(link),
            prefix: cfg.prefix.clone(),
            scripts: Arc::new(Scripts::new()),
            retain_ms: cfg.expired_retention.as_millis().max(1).to_string(),
            redacted_url: cfg.redacted_url(),
        }))
    }

    /// Maps a failed call's error, retiring its connection when it is lost.
    fn failed(&self, e: &RedisError, epoch: u64) -> StoreError {
        if codec::connection_lost(e) {
            self.link.lost(epoch);
        }
        codec::store_error(e)
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
        let now_us = codec::to_micros(now).to_string();
        let (mut conn, epoch) = self.link.connection().await?;
        // The commit point: the script is this call's write (see the module docs).
        if !watch.begin_commit() {
            return Err(StoreError::Timeout("the caller gave up before the write was sent".into()));
        }
        let sent = self
            .scripts
            .issue_call(&k, user, &random, &now_us, &self.retain_ms)
            .invoke_async::<Vec<Option<String>>>(&mut conn)
            .await;
        // Never retried: a lost reply may mean the token was stored (see the module docs).
        let reply = sent.map_err(|e| self.failed(&e, epoch))?;
        self.link.answered();
        codec::issue_outcome(&reply, room)
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
        let mut retried = false;
        let reply = loop {
            let (mut conn, epoch) = self.link.connection().await?;
            let sent =
                self.scripts.find_call(&k, &place, true).invoke_async::<Option<Vec<Option<String>>>>(&mut conn).await;
            match sent {
                Ok(reply) => break reply,
                // A read changes nothing: retried once on a fresh connection when the first
                // attempt met a dropped connection quickly (a stale one after a restart).
                Err(e) if !retried && e.is_connection_dropped() && started.elapsed() < self.link.timeouts.read => {
                    self.link.lost(epoch);
                    retried = true;
                }
                Err(e) => return Err(self.failed(&e, epoch)),
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
