//! The connection pool: r2d2 over plain redis connections, with the timeouts of
//! [`RedisTimeouts`] on every socket, and a way to drop every pooled connection at once when
//! one of them finds Redis gone.
//!
//! A connection that saw an I/O error (refused, reset, timed out) is marked broken, so the pool
//! drops it instead of reusing it, and the pool's *epoch* is bumped. A connection remembers
//! the epoch it was opened in, and the check on every checkout (an atomic load, no round trip)
//! refuses one from an older epoch: after a Redis restart the first call that meets a dead
//! connection retires all of them, and the next calls open fresh ones, instead of each idle
//! connection failing one call in turn. No PING before use: a healthy call stays one round
//! trip.
//!
//! While the last attempt to open a connection failed (Redis refused it or did not answer in
//! time) and the pool has no idle connection, a call fails at once instead of waiting out the
//! checkout timeout, so a request during an outage answers 503 in microseconds and never holds
//! a worker for seconds. r2d2 keeps retrying a failed connection in the background (every
//! 0.2 s to 1 s), and one call per probe interval still asks the pool (so an attempt is always
//! under way); the first connection opened or reply received clears the state. The price: a
//! single failed attempt while Redis is in fact up (a fluke under load) fails the calls that
//! find the pool empty until the retry or the next probe succeeds, a fraction of a second.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use redis::{ConnectionLike as _, ErrorKind, IntoConnectionInfo as _, RedisError};

use crate::config::RedisTimeouts;

/// What the pool and the queue know about Redis' reachability, shared between them.
#[derive(Debug, Default)]
pub(crate) struct Health {
    /// Bumped when a connection is found lost; older connections are refused at checkout.
    epoch: AtomicU64,
    /// The last attempt to open a connection failed, and nothing has answered since.
    unreachable: AtomicBool,
    /// When a call last asked the pool while `unreachable`.
    last_probe: Mutex<Option<Instant>>,
}

impl Health {
    /// Retires every connection opened so far; returns the new epoch.
    pub(crate) fn retire_all(&self) -> u64 {
        self.epoch.fetch_add(1, Ordering::AcqRel) + 1
    }

    /// Whether the last connection attempt failed and nothing answered since.
    pub(crate) fn unreachable(&self) -> bool {
        self.unreachable.load(Ordering::Acquire)
    }

    /// Redis answered: calls go to the pool again.
    pub(crate) fn answered(&self) {
        if self.unreachable() {
            self.unreachable.store(false, Ordering::Release);
        }
    }

    /// While unreachable: whether this call may ask the pool (one per `every`).
    pub(crate) fn may_probe(&self, every: Duration) -> bool {
        let mut last = self.last_probe.lock().unwrap_or_else(PoisonError::into_inner);
        let now = Instant::now();
        if last.is_some_and(|t| now.saturating_duration_since(t) < every) {
            return false;
        }
        *last = Some(now);
        true
    }
}

/// Opens connections with timeouts and judges them by epoch.
#[derive(Debug)]
pub(crate) struct Manager {
    client: redis::Client,
    timeouts: RedisTimeouts,
    health: Arc<Health>,
}

impl Manager {
    pub(crate) fn new(client: redis::Client, timeouts: RedisTimeouts, health: Arc<Health>) -> Self {
        Self { client, timeouts, health }
    }

    /// A client for `url` that sends nothing on connect beyond authentication and `SELECT`:
    /// the crate's `CLIENT SETINFO` would wait out the connect timeout once per command on a
    /// hung server (it doubled the time to find one).
    pub(crate) fn client(url: &str) -> Result<redis::Client, RedisError> {
        let info = url.into_connection_info()?;
        let settings = info.redis_settings().clone().set_skip_set_lib_name();
        redis::Client::open(info.set_redis_settings(settings))
    }

    /// Opens a connection and proves the server answers (a hung server accepts TCP
    /// connections in its kernel backlog and answers nothing), all within the connect timeout
    /// as far as the socket layer allows; then sets the timeouts every call runs under.
    fn open(&self) -> Result<redis::Connection, RedisError> {
        let mut conn = self.client.get_connection_with_timeout(self.timeouts.connect)?;
        conn.set_read_timeout(Some(self.timeouts.connect))?;
        conn.set_write_timeout(Some(self.timeouts.connect))?;
        redis::cmd("PING").exec(&mut conn)?;
        conn.set_read_timeout(Some(self.timeouts.read))?;
        conn.set_write_timeout(Some(self.timeouts.write))?;
        Ok(conn)
    }
}

/// A pooled connection.
pub(crate) struct Conn {
    pub(crate) inner: redis::Connection,
    epoch: u64,
    broken: bool,
}

impl Conn {
    /// Marks this connection unusable (the pool drops it when it comes back).
    pub(crate) fn mark_broken(&mut self) {
        self.broken = true;
    }
}

impl r2d2::ManageConnection for Manager {
    type Connection = Conn;
    type Error = RedisError;

    fn connect(&self) -> Result<Conn, RedisError> {
        // Read before connecting: a failure seen meanwhile makes this connection stale, which
        // at worst costs one reconnect.
        let epoch = self.health.epoch.load(Ordering::Acquire);
        match self.open() {
            Ok(inner) => {
                self.health.answered();
                Ok(Conn { inner, epoch, broken: false })
            }
            Err(e) => {
                self.health.unreachable.store(true, Ordering::Release);
                Err(e)
            }
        }
    }

    fn is_valid(&self, conn: &mut Conn) -> Result<(), RedisError> {
        if conn.broken || conn.epoch != self.health.epoch.load(Ordering::Acquire) {
            return Err(RedisError::from((ErrorKind::Io, "connection opened before Redis was last found unreachable")));
        }
        Ok(())
    }

    fn has_broken(&self, conn: &mut Conn) -> bool {
        conn.broken || !conn.inner.is_open()
    }
}
