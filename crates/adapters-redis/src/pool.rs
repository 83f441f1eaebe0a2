//! The connection pool: r2d2 over [`Connection`]s, each a plain connection to one Redis or a
//! cluster connection (one socket per node, routed by slot), with the timeouts of
//! [`RedisTimeouts`] on every socket, and a way to drop every pooled connection at once when
//! one of them finds Redis (or a cluster node) gone.
//!
//! On a cluster a pooled connection is the `redis` crate's [`ClusterConnection`]: opened from
//! the first configured node that answers, it reads the slot map (`CLUSTER SLOTS`) and opens a
//! socket per node on demand. It is built with no retries of its own (`retries(0)`): a
//! command sent to a dead master fails at once instead of sleeping through the crate's
//! back-off, and a write is never sent twice behind our back. What the crate would do on
//! a retry this module and the queue do instead: a connection that met a dead node or a stale
//! route (`MOVED`, `ASK`, `READONLY`) is dropped, so the next call opens a fresh one with the
//! slot map as it is now (after a failover: the promoted replica); a `MOVED` reply, which
//! means the command did not run, is retried once on it. Unlike one Redis, one node found
//! gone does not retire every pooled connection: those of the other masters' rooms are
//! fine, and reopening them all on every failed call of a dead master's rooms would slow
//! every room during a failover (each new connection reads the slot map and opens a socket
//! per node, the dead one included). Instead each new connection reads the slot map
//! (`CLUSTER SLOTS`), and when it differs from the one the previous connection read (the
//! replica took over), the epoch below retires every connection opened before: none keeps
//! routing a room to its dead master once the cluster knows better. The crate opens a new
//! cluster connection's sockets to every node of the map in turn, a dead master's included
//! until the replica took over: where a dead host does not refuse at once (a host gone from
//! the network rather than a crashed process), each costs up to the connect timeout, which
//! must stay well under the checkout timeout: on a cluster it is at most 250 ms
//! (`CLUSTER_CONNECT_MAX`; a LAN connects in a millisecond).
//!
//! A connection that saw an I/O error (refused, reset, timed out) is marked broken, so the pool
//! drops it instead of reusing it, and (on one Redis) the pool's *epoch* is bumped. A connection remembers
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

use redis::cluster::{ClusterClient, ClusterClientBuilder, ClusterConnection};
use redis::cluster_routing::{Route, RoutingInfo, SingleNodeRoutingInfo, SlotAddr};
use redis::{Arg, Cmd, ConnectionLike, ErrorKind, IntoConnectionInfo as _, RedisError, RedisResult, Value};

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
    /// On a cluster: the slot map (ranges and their masters) the newest connection read.
    topology: Mutex<Option<Vec<(i64, i64, String)>>>,
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

/// The longest a cluster connection waits for one node's TCP connection (below: it opens one
/// to every node in turn, a dead one included).
pub(crate) const CLUSTER_CONNECT_MAX: Duration = Duration::from_millis(250);

/// What connections are opened to: one Redis, or a cluster.
#[derive(Debug)]
pub(crate) enum Client {
    Single(redis::Client),
    Cluster(Box<ClusterClient>),
}

impl Client {
    /// A client for `urls`: one URL is one Redis, several are the nodes of a cluster (any
    /// that answers gives the slot map). Each sends nothing on connect beyond authentication
    /// and `SELECT`: the crate's `CLIENT SETINFO` would wait out the connect timeout once per
    /// command on a hung server (it doubled the time to find one).
    pub(crate) fn new(urls: &[&str], timeouts: &RedisTimeouts) -> Result<Self, RedisError> {
        let infos = urls
            .iter()
            .map(|url| {
                let info = url.into_connection_info()?;
                let settings = info.redis_settings().clone().set_skip_set_lib_name();
                Ok(info.set_redis_settings(settings))
            })
            .collect::<Result<Vec<_>, RedisError>>()?;
        match <[_; 1]>::try_from(infos) {
            Ok([info]) => Ok(Self::Single(redis::Client::open(info)?)),
            Err(infos) => Ok(Self::Cluster(Box::new(
                ClusterClientBuilder::new(infos)
                    .connection_timeout(timeouts.connect.min(CLUSTER_CONNECT_MAX))
                    .response_timeout(timeouts.read)
                    // See the module docs: no sleeping retries, no write sent twice.
                    .retries(0)
                    .build()?,
            ))),
        }
    }

    pub(crate) fn is_cluster(&self) -> bool {
        matches!(self, Self::Cluster(_))
    }
}

/// One connection: to one Redis, or to a cluster's nodes.
pub(crate) enum Connection {
    Single(redis::Connection),
    Cluster(Box<ClusterSlot>),
}

/// A cluster connection and the route of the last keyed command sent on it.
pub(crate) struct ClusterSlot {
    conn: ClusterConnection,
    /// The master of the slot the last script ran on: where `SCRIPT LOAD` after its `NOSCRIPT`
    /// and `WAIT` after its write go.
    last: Option<Route>,
}

impl Connection {
    /// Waits until `replicas` replicas have every write sent on this connection so far (on a
    /// cluster: to the master of the last script's slot), at most `timeout`; returns how many
    /// confirmed. `WAIT` cannot run inside a script, so it follows the script on the same
    /// socket.
    pub(crate) fn confirm(&mut self, replicas: u32, timeout: Duration) -> RedisResult<u32> {
        let mut wait = redis::cmd("WAIT");
        wait.arg(replicas).arg(u64::try_from(timeout.as_millis()).unwrap_or(u64::MAX).max(1));
        redis::from_redis_value(self.on_last_master(&wait)?).map_err(RedisError::from)
    }

    /// How many replicas are attached to the master the last script ran on (`ROLE`).
    pub(crate) fn attached_replicas(&mut self) -> RedisResult<u32> {
        replicas_in_role(self.on_last_master(&redis::cmd("ROLE"))?)
    }

    /// Sends `cmd` on one Redis, or on a cluster to the master of `key`'s slot (a keyless
    /// command that must always ask the same node, such as `TIME`).
    pub(crate) fn on_master_of(&mut self, key: &str, cmd: &Cmd) -> RedisResult<Value> {
        match self {
            Self::Single(conn) => conn.req_command(cmd),
            Self::Cluster(c) => c.conn.route_command(
                cmd,
                RoutingInfo::SingleNode(SingleNodeRoutingInfo::SpecificNode(Route::with_key(key, SlotAddr::Master))),
            ),
        }
    }

    /// Sends `cmd` on one Redis, or on a cluster to the master of the last script's slot.
    fn on_last_master(&mut self, cmd: &Cmd) -> RedisResult<Value> {
        match self {
            Self::Single(conn) => conn.req_command(cmd),
            Self::Cluster(c) => match c.last {
                Some(route) => {
                    c.conn.route_command(cmd, RoutingInfo::SingleNode(SingleNodeRoutingInfo::SpecificNode(route)))
                }
                None => Err(RedisError::from((ErrorKind::Client, "no script has run on this connection"))),
            },
        }
    }

    /// On a cluster: `CLUSTER INFO` of a node that answers, which must say `cluster_state:ok`
    /// (every slot served, this node in the majority). On one Redis: `PING`.
    pub(crate) fn health(&mut self) -> RedisResult<Result<(), String>> {
        match self {
            Self::Single(conn) => {
                let pong: String = redis::cmd("PING").query(conn)?;
                Ok(if pong == "PONG" { Ok(()) } else { Err(format!("Redis answered PING with {pong:?}")) })
            }
            Self::Cluster(c) => {
                let info: String = redis::cmd("CLUSTER").arg("INFO").query(&mut c.conn)?;
                let state = info.lines().find_map(|l| l.trim().strip_prefix("cluster_state:")).unwrap_or("unknown");
                Ok(if state == "ok" { Ok(()) } else { Err(format!("the Redis Cluster's state is {state}")) })
            }
        }
    }

    fn like(&mut self) -> &mut dyn ConnectionLike {
        match self {
            Self::Single(conn) => conn,
            Self::Cluster(c) => &mut c.conn,
        }
    }
}

/// How many replicas a master's `ROLE` reply lists; an error when the node is no master.
pub(crate) fn replicas_in_role(reply: Value) -> RedisResult<u32> {
    let role: Vec<Value> = redis::from_redis_value(reply)?;
    match role.as_slice() {
        [kind, _offset, Value::Array(replicas), ..] if redis::from_redis_value::<String>(kind.clone())? == "master" => {
            Ok(u32::try_from(replicas.len()).unwrap_or(u32::MAX))
        }
        _ => Err(RedisError::from((ErrorKind::Client, "ROLE: not a master"))),
    }
}

/// The first key of an `EVALSHA`/`EVAL` with keys.
pub(crate) fn script_key(cmd: &Cmd) -> Option<Vec<u8>> {
    let mut args = cmd.args_iter().filter_map(|a| match a {
        Arg::Simple(bytes) => Some(bytes),
        _ => None,
    });
    let name = args.next()?;
    if !(name.eq_ignore_ascii_case(b"EVALSHA") || name.eq_ignore_ascii_case(b"EVAL")) {
        return None;
    }
    let _script = args.next()?;
    let count: u64 = std::str::from_utf8(args.next()?).ok()?.parse().ok()?;
    if count == 0 {
        return None;
    }
    args.next().map(<[u8]>::to_vec)
}

pub(crate) fn is_script_load(cmd: &Cmd) -> bool {
    let mut args = cmd.args_iter();
    matches!(
        (args.next(), args.next()),
        (Some(Arg::Simple(a)), Some(Arg::Simple(b))) if a.eq_ignore_ascii_case(b"SCRIPT") && b.eq_ignore_ascii_case(b"LOAD")
    )
}

/// Delegates to the inner connection. On a cluster, a script's `SCRIPT LOAD` (after
/// `NOSCRIPT`) goes to the master of the slot the script was refused on, not to every node
/// as the crate routes it: a dead node elsewhere must not fail a room whose master is up, and
/// a promoted replica loads what it misses on first use.
impl ConnectionLike for Connection {
    fn req_packed_command(&mut self, cmd: &[u8]) -> RedisResult<Value> {
        self.like().req_packed_command(cmd)
    }

    fn req_packed_commands(&mut self, cmd: &[u8], offset: usize, count: usize) -> RedisResult<Vec<Value>> {
        self.like().req_packed_commands(cmd, offset, count)
    }

    fn req_command(&mut self, cmd: &Cmd) -> RedisResult<Value> {
        match self {
            Self::Single(conn) => conn.req_command(cmd),
            Self::Cluster(c) => {
                if let Some(key) = script_key(cmd) {
                    c.last = Some(Route::with_key(key, SlotAddr::Master));
                } else if let (true, Some(route)) = (is_script_load(cmd), c.last) {
                    return c
                        .conn
                        .route_command(cmd, RoutingInfo::SingleNode(SingleNodeRoutingInfo::SpecificNode(route)));
                }
                c.conn.req_command(cmd)
            }
        }
    }

    fn get_db(&self) -> i64 {
        match self {
            Self::Single(conn) => conn.get_db(),
            Self::Cluster(c) => c.conn.get_db(),
        }
    }

    fn check_connection(&mut self) -> bool {
        self.like().check_connection()
    }

    fn is_open(&self) -> bool {
        match self {
            Self::Single(conn) => conn.is_open(),
            Self::Cluster(c) => c.conn.is_open(),
        }
    }
}

/// Opens connections with timeouts and judges them by epoch.
#[derive(Debug)]
pub(crate) struct Manager {
    client: Client,
    timeouts: RedisTimeouts,
    health: Arc<Health>,
}

impl Manager {
    pub(crate) fn new(client: Client, timeouts: RedisTimeouts, health: Arc<Health>) -> Self {
        Self { client, timeouts, health }
    }

    /// Opens a connection and proves the server answers (a hung server accepts TCP
    /// connections in its kernel backlog and answers nothing), all within the connect timeout
    /// as far as the socket layer allows; then sets the timeouts every call runs under. A
    /// cluster connection proves it by reading the slot map (and `PING`s each node it opens).
    fn open(&self) -> Result<Connection, RedisError> {
        match &self.client {
            Client::Single(client) => {
                let mut conn = client.get_connection_with_timeout(self.timeouts.connect)?;
                conn.set_read_timeout(Some(self.timeouts.connect))?;
                conn.set_write_timeout(Some(self.timeouts.connect))?;
                redis::cmd("PING").exec(&mut conn)?;
                conn.set_read_timeout(Some(self.timeouts.read))?;
                conn.set_write_timeout(Some(self.timeouts.write))?;
                Ok(Connection::Single(conn))
            }
            Client::Cluster(client) => {
                let conn = client.get_connection()?;
                conn.set_read_timeout(Some(self.timeouts.read))?;
                conn.set_write_timeout(Some(self.timeouts.write))?;
                Ok(Connection::Cluster(Box::new(ClusterSlot { conn, last: None })))
            }
        }
    }
}

/// A pooled connection.
pub(crate) struct Conn {
    pub(crate) inner: Connection,
    epoch: u64,
    broken: bool,
}

impl Conn {
    /// Marks this connection unusable (the pool drops it when it comes back).
    pub(crate) fn mark_broken(&mut self) {
        self.broken = true;
    }
}

impl Manager {
    /// Reads the slot map a new cluster connection routes by; when it differs from the one
    /// the last connection read (a failover, a resharding), retires every connection opened
    /// before, which route by the old one, and returns the new epoch for this connection.
    fn adopt_topology(&self, conn: &mut ClusterConnection) -> RedisResult<Option<u64>> {
        let ranges: Vec<Value> = redis::cmd("CLUSTER").arg("SLOTS").query(conn)?;
        let mut map = Vec::with_capacity(ranges.len());
        for range in ranges {
            if let Value::Array(items) = range {
                if let [start, end, Value::Array(master), ..] = items.as_slice() {
                    let host: String =
                        master.first().cloned().map(redis::from_redis_value).transpose()?.unwrap_or_default();
                    let port: i64 =
                        master.get(1).cloned().map(redis::from_redis_value).transpose()?.unwrap_or_default();
                    map.push((
                        redis::from_redis_value(start.clone())?,
                        redis::from_redis_value(end.clone())?,
                        format!("{host}:{port}"),
                    ));
                }
            }
        }
        map.sort_unstable();
        let mut known = self.health.topology.lock().unwrap_or_else(PoisonError::into_inner);
        if known.as_ref() == Some(&map) {
            return Ok(None);
        }
        let first = known.is_none();
        *known = Some(map);
        if first {
            return Ok(None);
        }
        let epoch = self.health.retire_all();
        tracing::info!(epoch, "the Redis Cluster's slot map changed; retiring connections that route by the old one");
        Ok(Some(epoch))
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
            Ok(mut inner) => {
                self.health.answered();
                let epoch = match &mut inner {
                    Connection::Single(_) => epoch,
                    Connection::Cluster(c) => self.adopt_topology(&mut c.conn)?.unwrap_or(epoch),
                };
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_scripts_first_key_routes_its_load_and_its_wait() {
        let mut evalsha = redis::cmd("EVALSHA");
        evalsha.arg("abc").arg(2).arg("{concert:tour}:issued").arg("{concert:tour}:cursor").arg("x");
        assert_eq!(script_key(&evalsha), Some(b"{concert:tour}:issued".to_vec()));
        let mut keyless = redis::cmd("EVAL");
        keyless.arg("return 1").arg(0);
        assert_eq!(script_key(&keyless), None);
        assert_eq!(script_key(redis::cmd("GET").arg("k")), None);
        assert!(is_script_load(redis::cmd("SCRIPT").arg("LOAD").arg("return 1")));
        assert!(!is_script_load(redis::cmd("SCRIPT").arg("FLUSH")));
    }
}
