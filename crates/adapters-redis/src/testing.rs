//! For tests (feature `testing`): a real Redis Cluster of 3 masters and 3 replicas that a test
//! starts itself on free local ports under a temporary directory, and connections to one Redis
//! or a cluster that test code can inspect keys with.
//!
//! [`Cluster::start`] runs six `redis-server --cluster-enabled yes` (node timeout 1 s, no
//! persistence, `cluster-require-full-coverage no` so that the slots of a failed master stop
//! answering and no others), `redis-cli --cluster create ... --cluster-replicas 1`, and waits
//! until every node says `cluster_state:ok` and every master's writes reach its replica. Dropping
//! the [`Cluster`] kills every server and removes the directory, also when the test panics. A
//! cluster shared by the tests of one binary ([`shared`]) lives in a static, which Rust never
//! drops: for it, and for any cluster whose test process dies without unwinding, a small
//! watcher process (`sh`) started with the cluster kills the servers and removes the
//! directory once the test process is gone.

use std::collections::hash_map::RandomState;
use std::hash::{BuildHasher as _, Hasher as _};
use std::net::TcpListener;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use redis::cluster::{ClusterClient, ClusterConnection};
use redis::{Cmd, ConnectionLike, RedisResult, Value};

/// How long the cluster may take to form.
const FORM_WITHIN: Duration = Duration::from_secs(30);

/// A Redis Cluster of 3 masters and 3 replicas on local ports (see the module docs).
#[derive(Debug)]
pub struct Cluster {
    dir: PathBuf,
    nodes: Vec<Node>,
    watcher: Option<Child>,
}

#[derive(Debug)]
struct Node {
    port: u16,
    server: Option<Child>,
}

/// A random number without a dependency (ports, directory names).
fn random() -> u64 {
    let mut h = RandomState::new().build_hasher();
    h.write_u128(Instant::now().elapsed().as_nanos());
    h.finish()
}

/// A port `p` with `p` and its cluster bus port `p + 10000` free.
fn free_port(taken: &[u16]) -> Result<u16, String> {
    for _ in 0..1000 {
        let port = 20_000 + u16::try_from(random() % 20_000).unwrap_or(0);
        if taken.iter().any(|t| t.abs_diff(port) == 0 || t.abs_diff(port) == 10_000) {
            continue;
        }
        if TcpListener::bind(("127.0.0.1", port)).is_ok() && TcpListener::bind(("127.0.0.1", port + 10_000)).is_ok() {
            return Ok(port);
        }
    }
    Err("no free port pair for a cluster node".into())
}

fn node_connection(port: u16) -> RedisResult<redis::Connection> {
    let client = redis::Client::open(format!("redis://127.0.0.1:{port}"))?;
    let conn = client.get_connection_with_timeout(Duration::from_millis(500))?;
    conn.set_read_timeout(Some(Duration::from_secs(2)))?;
    Ok(conn)
}

fn info_field(info: &str, name: &str) -> Option<String> {
    info.lines().find_map(|l| l.trim().strip_prefix(name)?.strip_prefix(':').map(str::to_owned))
}

impl Cluster {
    /// Starts six nodes and forms the cluster (see the module docs).
    ///
    /// # Errors
    /// Why the cluster could not be started (no `redis-server`, no free port, not formed in
    /// time); everything started so far is removed.
    pub fn start() -> Result<Self, String> {
        let dir = std::env::temp_dir().join(format!("redis-cluster-{}-{:x}", std::process::id(), random()));
        std::fs::create_dir_all(&dir).map_err(|e| format!("creating {}: {e}", dir.display()))?;
        let mut cluster = Self { dir, nodes: Vec::new(), watcher: None };
        for _ in 0..6 {
            let taken: Vec<u16> = cluster.nodes.iter().map(|n| n.port).collect();
            let port = free_port(&taken)?;
            let server = cluster.spawn(port)?;
            cluster.nodes.push(Node { port, server: Some(server) });
        }
        cluster.watch()?;
        cluster.form()?;
        Ok(cluster)
    }

    fn spawn(&self, port: u16) -> Result<Child, String> {
        let dir = self.dir.display().to_string();
        Command::new("redis-server")
            .args(["--port", &port.to_string(), "--bind", "127.0.0.1", "--dir", &dir])
            .args(["--cluster-enabled", "yes", "--cluster-config-file", &format!("{dir}/nodes-{port}.conf")])
            .args(["--cluster-node-timeout", "1000", "--cluster-require-full-coverage", "no"])
            .args(["--save", "", "--appendonly", "no", "--daemonize", "no"])
            .args(["--logfile", &format!("{dir}/{port}.log")])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .map_err(|e| format!("starting redis-server on port {port}: {e}"))
    }

    /// The watcher: once this process is gone, kills the servers and removes the directory.
    fn watch(&mut self) -> Result<(), String> {
        let pids: Vec<String> =
            self.nodes.iter().filter_map(|n| n.server.as_ref()).map(|c| c.id().to_string()).collect();
        let script = format!(
            "while kill -0 {} 2>/dev/null; do sleep 0.5; done; kill -9 {} 2>/dev/null; rm -rf '{}'",
            std::process::id(),
            pids.join(" "),
            self.dir.display()
        );
        let child = Command::new("sh")
            .args(["-c", &script])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .map_err(|e| format!("starting the cluster's watcher: {e}"))?;
        self.watcher = Some(child);
        Ok(())
    }

    fn form(&self) -> Result<(), String> {
        let deadline = Instant::now() + FORM_WITHIN;
        for node in &self.nodes {
            while node_connection(node.port).and_then(|mut c| redis::cmd("PING").query::<String>(&mut c)).is_err() {
                if Instant::now() > deadline {
                    return Err(format!(
                        "redis-server on port {} did not answer (see {}/{}.log)",
                        node.port,
                        self.dir.display(),
                        node.port
                    ));
                }
                std::thread::sleep(Duration::from_millis(20));
            }
        }
        let out = Command::new("redis-cli")
            .arg("--cluster")
            .arg("create")
            .args(self.nodes.iter().map(|n| format!("127.0.0.1:{}", n.port)))
            .args(["--cluster-replicas", "1", "--cluster-yes"])
            .stdin(Stdio::null())
            .output()
            .map_err(|e| format!("running redis-cli --cluster create: {e}"))?;
        if !out.status.success() {
            return Err(format!(
                "redis-cli --cluster create failed: {}{}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            ));
        }
        self.wait_formed(deadline)
    }

    /// Waits until every live node says `cluster_state:ok` and every master has a replica
    /// online that its writes reach.
    fn wait_formed(&self, deadline: Instant) -> Result<(), String> {
        loop {
            match self.formed() {
                Ok(()) => return Ok(()),
                Err(e) if Instant::now() > deadline => return Err(format!("the cluster did not form: {e}")),
                Err(_) => std::thread::sleep(Duration::from_millis(50)),
            }
        }
    }

    fn formed(&self) -> Result<(), String> {
        let mut masters = 0;
        for port in self.live_ports() {
            let mut c = node_connection(port).map_err(|e| e.to_string())?;
            let info: String = redis::cmd("CLUSTER").arg("INFO").query(&mut c).map_err(|e| e.to_string())?;
            if info_field(&info, "cluster_state").as_deref() != Some("ok") {
                return Err(format!("node {port}: cluster_state not ok"));
            }
            let repl: String = redis::cmd("INFO").arg("replication").query(&mut c).map_err(|e| e.to_string())?;
            match info_field(&repl, "role").as_deref() {
                Some("master") => {
                    masters += 1;
                    let online = info_field(&repl, "slave0").is_some_and(|s| s.contains("state=online"));
                    if !online {
                        return Err(format!("master {port} has no replica online"));
                    }
                }
                Some("slave") => {
                    if info_field(&repl, "master_link_status").as_deref() != Some("up") {
                        return Err(format!("replica {port} is not linked"));
                    }
                }
                other => return Err(format!("node {port} has role {other:?}")),
            }
        }
        if masters != 3 {
            return Err(format!("{masters} masters, not 3"));
        }
        self.replicating()
    }

    /// Whether a write on each master reaches its replica (`WAIT`): a replica reported online
    /// may not be streamed to yet (after its first sync the master waits for its first ack,
    /// sent once a second), and a test's first writes would then go unconfirmed.
    fn replicating(&self) -> Result<(), String> {
        let mut probed = std::collections::BTreeSet::new();
        for i in 0..10_000 {
            let key = format!("{{formed-{i}}}");
            let master = self.master_of(&key)?;
            if !probed.insert(master) {
                continue;
            }
            let mut c = node_connection(master).map_err(|e| e.to_string())?;
            let _: () =
                redis::cmd("SET").arg(&key).arg(1).arg("PX").arg(60_000).query(&mut c).map_err(|e| e.to_string())?;
            let acked: i64 = redis::cmd("WAIT").arg(1).arg(200).query(&mut c).map_err(|e| e.to_string())?;
            if acked < 1 {
                return Err(format!("master {master} is not streaming to its replica yet"));
            }
            if probed.len() == 3 {
                return Ok(());
            }
        }
        Err("no key found for every master".into())
    }

    /// `REDIS_URL` for this cluster: every node, comma-separated.
    #[must_use]
    pub fn url(&self) -> String {
        self.nodes.iter().map(|n| format!("redis://127.0.0.1:{}", n.port)).collect::<Vec<_>>().join(",")
    }

    /// The ports of the nodes not killed.
    #[must_use]
    pub fn live_ports(&self) -> Vec<u16> {
        self.nodes.iter().filter(|n| n.server.is_some()).map(|n| n.port).collect()
    }

    /// The port of the master serving `key`'s slot now, as a live node sees it.
    ///
    /// # Errors
    /// No live node answered.
    pub fn master_of(&self, key: &str) -> Result<u16, String> {
        let mut last = String::from("no live node");
        for port in self.live_ports() {
            match Self::master_of_on(port, key) {
                Ok(master) => return Ok(master),
                Err(e) => last = e.to_string(),
            }
        }
        Err(last)
    }

    /// The port of the master serving `key`'s slot as the node on `port` sees it, if it
    /// answers.
    #[must_use]
    pub fn master_of_port(port: u16, key: &str) -> Option<u16> {
        Self::master_of_on(port, key).ok()
    }

    fn master_of_on(port: u16, key: &str) -> RedisResult<u16> {
        let mut c = node_connection(port)?;
        let slot: i64 = redis::cmd("CLUSTER").arg("KEYSLOT").arg(key).query(&mut c)?;
        let ranges: Vec<Value> = redis::cmd("CLUSTER").arg("SLOTS").query(&mut c)?;
        for range in ranges {
            let (start, end, master): (i64, i64, (String, u16)) = match range {
                Value::Array(items) if items.len() >= 3 => {
                    let mut it = items.into_iter();
                    let start = redis::from_redis_value(it.next().unwrap_or(Value::Nil))?;
                    let end = redis::from_redis_value(it.next().unwrap_or(Value::Nil))?;
                    let node: Vec<Value> = redis::from_redis_value(it.next().unwrap_or(Value::Nil))?;
                    let mut node = node.into_iter();
                    let host = redis::from_redis_value(node.next().unwrap_or(Value::Nil))?;
                    let port = redis::from_redis_value(node.next().unwrap_or(Value::Nil))?;
                    (start, end, (host, port))
                }
                _ => continue,
            };
            if (start..=end).contains(&slot) {
                return Ok(master.1);
            }
        }
        Err(redis::RedisError::from((redis::ErrorKind::Client, "slot not covered")))
    }

    /// The port of a replica of the master on `master` (its `ROLE`).
    ///
    /// # Errors
    /// The master did not answer, or has no replica attached.
    pub fn replica_of(&self, master: u16) -> Result<u16, String> {
        let mut c = node_connection(master).map_err(|e| e.to_string())?;
        let role: Vec<Value> = redis::cmd("ROLE").query(&mut c).map_err(|e| e.to_string())?;
        let replicas: Vec<Vec<String>> = role
            .into_iter()
            .nth(2)
            .map(redis::from_redis_value)
            .transpose()
            .map_err(|e| e.to_string())?
            .unwrap_or_default();
        replicas
            .first()
            .and_then(|r| r.get(1))
            .and_then(|port| port.parse().ok())
            .ok_or_else(|| format!("the master on {master} has no replica attached"))
    }

    /// Sends `signal` (as `kill` spells it: `-STOP`, `-CONT`) to the node on `port`.
    ///
    /// # Panics
    /// No live node on `port`, or `kill` failed.
    #[allow(clippy::panic, reason = "a test that cannot signal its node must fail")]
    pub fn signal(&self, port: u16, signal: &str) {
        let node = self.nodes.iter().find(|n| n.port == port).and_then(|n| n.server.as_ref());
        let pid = node.map(Child::id).unwrap_or_else(|| panic!("no live node on port {port}"));
        let sent = Command::new("kill").args([signal, &pid.to_string()]).status();
        assert!(sent.is_ok_and(|s| s.success()), "kill {signal} {pid} failed");
    }

    /// Kills the node on `port` with SIGKILL (a crash: no goodbye to the cluster).
    pub fn kill(&mut self, port: u16) {
        if let Some(node) = self.nodes.iter_mut().find(|n| n.port == port) {
            if let Some(mut server) = node.server.take() {
                let _ = server.kill();
                let _ = server.wait();
            }
        }
    }

    /// Waits until every live node says `cluster_state:ok` and each master serving slots has
    /// a replica online (after a failover: once the killed master's replica took over; it
    /// then has no replica, so only `cluster_state` is required of it).
    ///
    /// # Errors
    /// Not so within `within`.
    pub fn wait_ok(&self, within: Duration) -> Result<(), String> {
        let deadline = Instant::now() + within;
        loop {
            let ok = self.live_ports().into_iter().all(|port| {
                node_connection(port)
                    .and_then(|mut c| redis::cmd("CLUSTER").arg("INFO").query::<String>(&mut c))
                    .is_ok_and(|info| info_field(&info, "cluster_state").as_deref() == Some("ok"))
            });
            if ok {
                return Ok(());
            }
            if Instant::now() > deadline {
                return Err("the cluster's state is not ok".into());
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        for node in &mut self.nodes {
            if let Some(mut server) = node.server.take() {
                let _ = server.kill();
                let _ = server.wait();
            }
        }
        let _ = std::fs::remove_dir_all(&self.dir);
        if let Some(mut watcher) = self.watcher.take() {
            let _ = watcher.kill();
            let _ = watcher.wait();
        }
    }
}

/// One cluster for every test of this test binary, started on first use and removed when the
/// binary exits (by the watcher; see the module docs).
///
/// # Panics
/// When the cluster cannot be started: a test that cannot set up its environment fails.
#[must_use]
#[allow(clippy::panic, reason = "a test whose cluster cannot start must fail")]
pub fn shared() -> &'static Cluster {
    static SHARED: OnceLock<Result<Cluster, String>> = OnceLock::new();
    match SHARED.get_or_init(Cluster::start) {
        Ok(cluster) => cluster,
        Err(e) => panic!("cannot start the test Redis Cluster: {e}"),
    }
}

/// A connection to one Redis or, for a comma-separated list of URLs, to a cluster: tests read
/// and write keys through it with `redis::Commands`.
pub enum TestConnection {
    /// One Redis.
    Single(redis::Connection),
    /// A cluster (commands routed by slot).
    Cluster(Box<ClusterConnection>),
}

impl std::fmt::Debug for TestConnection {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Self::Single(_) => "TestConnection::Single",
            Self::Cluster(_) => "TestConnection::Cluster",
        })
    }
}

impl TestConnection {
    /// Connects to `url` (one URL or a comma-separated list).
    ///
    /// # Errors
    /// The server or cluster could not be reached.
    pub fn open(url: &str) -> RedisResult<Self> {
        let nodes: Vec<&str> = url.split(',').map(str::trim).filter(|u| !u.is_empty()).collect();
        if let [one] = nodes.as_slice() {
            let conn = redis::Client::open(*one)?.get_connection_with_timeout(Duration::from_secs(1))?;
            conn.set_read_timeout(Some(Duration::from_secs(5)))?;
            Ok(Self::Single(conn))
        } else {
            let client = ClusterClient::builder(nodes).connection_timeout(Duration::from_secs(1)).build()?;
            Ok(Self::Cluster(Box::new(client.get_connection()?)))
        }
    }

    fn like(&mut self) -> &mut dyn ConnectionLike {
        match self {
            Self::Single(c) => c,
            Self::Cluster(c) => &mut **c,
        }
    }
}

impl ConnectionLike for TestConnection {
    fn req_packed_command(&mut self, cmd: &[u8]) -> RedisResult<Value> {
        self.like().req_packed_command(cmd)
    }

    fn req_packed_commands(&mut self, cmd: &[u8], offset: usize, count: usize) -> RedisResult<Vec<Value>> {
        self.like().req_packed_commands(cmd, offset, count)
    }

    fn req_command(&mut self, cmd: &Cmd) -> RedisResult<Value> {
        self.like().req_command(cmd)
    }

    fn get_db(&self) -> i64 {
        match self {
            Self::Single(c) => c.get_db(),
            Self::Cluster(c) => c.get_db(),
        }
    }

    fn check_connection(&mut self) -> bool {
        self.like().check_connection()
    }

    fn is_open(&self) -> bool {
        match self {
            Self::Single(c) => c.is_open(),
            Self::Cluster(c) => c.is_open(),
        }
    }
}

/// The keys matching `pattern` on `url`: `SCAN` on one Redis, or on every master of a cluster
/// (a scan is per node: a cluster has no global keyspace to scan). Returns each key with the
/// URL of the node that holds it, so it can be deleted there.
///
/// # Errors
/// A node could not be reached.
pub fn scan(url: &str, pattern: &str) -> RedisResult<Vec<(String, String)>> {
    let nodes: Vec<&str> = url.split(',').map(str::trim).filter(|u| !u.is_empty()).collect();
    let masters: Vec<String> = if let [one] = nodes.as_slice() {
        vec![(*one).to_owned()]
    } else {
        let mut any = TestConnection::open(url)?;
        let Value::Array(ranges) = redis::cmd("CLUSTER").arg("SLOTS").query::<Value>(&mut any)? else {
            return Err(redis::RedisError::from((redis::ErrorKind::Client, "CLUSTER SLOTS is not an array")));
        };
        let mut masters = Vec::new();
        for range in ranges {
            if let Value::Array(items) = range {
                if let Some(node) = items.into_iter().nth(2) {
                    let (host, port): (String, u16) = match redis::from_redis_value::<Vec<Value>>(node)?.as_slice() {
                        [h, p, ..] => (redis::from_redis_value(h.clone())?, redis::from_redis_value(p.clone())?),
                        _ => continue,
                    };
                    let url = format!("redis://{host}:{port}");
                    if !masters.contains(&url) {
                        masters.push(url);
                    }
                }
            }
        }
        masters
    };
    let mut found = Vec::new();
    for node in masters {
        let mut con = redis::Client::open(node.as_str())?.get_connection_with_timeout(Duration::from_secs(1))?;
        let mut cursor = 0_u64;
        loop {
            let (next, batch): (u64, Vec<String>) =
                redis::cmd("SCAN").arg(cursor).arg("MATCH").arg(pattern).arg("COUNT").arg(1000).query(&mut con)?;
            found.extend(batch.into_iter().map(|k| (node.clone(), k)));
            if next == 0 {
                break;
            }
            cursor = next;
        }
    }
    Ok(found)
}

/// A line's keys read as stored, for tests that check what a script wrote (see the crate docs,
/// "Layout"): no test restates the record format.
pub mod layout {
    use domain::queue::TokenValue;
    use domain::room::RoomId;
    use redis::{Commands as _, ConnectionLike, RedisResult};

    use crate::keys::Keys;

    /// A token as stored (not as the scripts derive it).
    #[derive(Debug, Clone, PartialEq, Eq)]
    pub struct Stored {
        /// `WAITING` (a record in its bucket) or `EXPIRED` (its expired record).
        pub status: &'static str,
        /// The user's id.
        pub user: uuid::Uuid,
        /// Its arrival `seq`, from its value.
        pub seq: u64,
        /// Its issue time (µs).
        pub issued: i64,
        /// Its last sight (µs), if noted.
        pub seen: Option<i64>,
        /// When it became ACTIVE (µs), written once EXPIRED.
        pub activated: Option<i64>,
        /// When its ACTIVE time ended (µs), written once EXPIRED.
        pub expires: Option<i64>,
        /// Why it is EXPIRED: `TTL`, `PAID`, `ABANDONED`.
        pub reason: Option<&'static str>,
    }

    fn micros(bytes: &[u8], at: usize) -> Option<i64> {
        let b: [u8; 8] = bytes.get(at..at + 8)?.try_into().ok()?;
        i64::try_from(u64::from_be_bytes(b)).ok()
    }

    fn some(us: Option<i64>) -> Option<i64> {
        us.filter(|&us| us != 0)
    }

    /// The namespace of `room`'s line under `prefix`, braces included.
    #[must_use]
    pub fn namespace(prefix: &str, room: &RoomId) -> String {
        Keys::new(prefix, room).namespace
    }

    /// The arrival `seq` a token's value carries.
    ///
    /// # Panics
    /// When the value carries none (no token of this layout).
    #[must_use]
    #[allow(clippy::expect_used, reason = "tests")]
    pub fn seq_of(value: &TokenValue) -> u64 {
        Keys::new("any", &value.room()).place(value).expect("a value of this layout").seq
    }

    /// The token `value` of the line of `prefix` as stored; `None` when nothing is.
    ///
    /// # Errors
    /// Redis' errors.
    pub fn stored(con: &mut impl ConnectionLike, prefix: &str, value: &TokenValue) -> RedisResult<Option<Stored>> {
        let keys = Keys::new(prefix, &value.room());
        let Some(place) = keys.place(value) else { return Ok(None) };
        let user = |raw: &[u8]| raw.get(24..40).and_then(|b| uuid::Uuid::from_slice(b).ok()).unwrap_or_default();
        let (bucket, field) = keys.bucket(place.seq);
        let waiting: Option<Vec<u8>> = con.hget(&bucket, &field)?;
        if let Some(raw) = waiting.filter(|raw| raw.get(..24) == Some(&place.random[..])) {
            return Ok(Some(Stored {
                status: "WAITING",
                user: user(&raw),
                seq: place.seq,
                issued: micros(&raw, 40).unwrap_or_default(),
                seen: micros(&raw, 48),
                activated: None,
                expires: None,
                reason: None,
            }));
        }
        let expired: Option<Vec<u8>> = con.get(keys.expired(place.seq))?;
        Ok(expired.filter(|raw| raw.get(..24) == Some(&place.random[..])).map(|raw| Stored {
            status: "EXPIRED",
            user: user(&raw),
            seq: place.seq,
            issued: micros(&raw, 40).unwrap_or_default(),
            seen: None,
            activated: some(micros(&raw, 48)),
            expires: some(micros(&raw, 56)),
            reason: match raw.get(64) {
                Some(b'T') => Some("TTL"),
                Some(b'P') => Some("PAID"),
                Some(b'A') => Some("ABANDONED"),
                _ => None,
            },
        }))
    }

    /// Where the token `value` of the line of `prefix` is stored: its bucket of records and
    /// its field there (while stored WAITING), and its expired record.
    #[must_use]
    pub fn keys_of(prefix: &str, value: &TokenValue) -> Option<(String, String, String)> {
        let keys = Keys::new(prefix, &value.room());
        let seq = keys.place(value)?.seq;
        let (bucket, field) = keys.bucket(seq);
        Some((bucket, field, keys.expired(seq)))
    }

    /// The WAITING list of `room`'s line: the arrival `seq`s of the tokens not yet swept, in
    /// position order.
    ///
    /// # Errors
    /// Redis' errors.
    pub fn waiting(con: &mut impl ConnectionLike, prefix: &str, room: &RoomId) -> RedisResult<Vec<u64>> {
        con.lrange(Keys::new(prefix, room).waiting, 0, -1)
    }

    /// The `seq` the users hash holds for `user` in `room`'s line (their token stored WAITING).
    ///
    /// # Errors
    /// Redis' errors.
    pub fn user_seq(
        con: &mut impl ConnectionLike,
        prefix: &str,
        room: &RoomId,
        user: domain::ids::UserId,
    ) -> RedisResult<Option<u64>> {
        con.hget(Keys::new(prefix, room).users, &crate::keys::user_bytes(user)[..])
    }

    /// The value of the token of `room` with random part `random` and arrival `seq`, as issue
    /// gives it.
    ///
    /// # Panics
    /// Never for 24 bytes of `random`.
    #[must_use]
    #[allow(clippy::expect_used, reason = "tests")]
    pub fn value_of(room: &RoomId, random: &[u8; 24], seq: u64) -> TokenValue {
        crate::keys::token_value(room, random, seq).expect("24 random bytes")
    }

    /// Writes a WAITING token as issue.lua stores it (bulk set-ups of huge lines), into `pipe`:
    /// its record (with its last sight `seen_us`, as note_seen.lua writes it, if any), its
    /// user's entry and its `seq` at the end of the WAITING list. The caller sets `issued` and
    /// the cursor.
    pub fn push_waiting(
        pipe: &mut redis::Pipeline,
        prefix: &str,
        value: &TokenValue,
        user: domain::ids::UserId,
        issued_us: i64,
        seen_us: Option<i64>,
    ) {
        let keys = Keys::new(prefix, &value.room());
        let Some(place) = keys.place(value) else { return };
        let mut record = place.random.to_vec();
        record.extend_from_slice(&crate::keys::user_bytes(user));
        record.extend_from_slice(&issued_us.to_be_bytes());
        if let Some(seen) = seen_us {
            record.extend_from_slice(&seen.to_be_bytes());
        }
        let (bucket, field) = keys.bucket(place.seq);
        pipe.hset(bucket, field, record).ignore();
        pipe.hset(&keys.users, &crate::keys::user_bytes(user)[..], place.seq).ignore();
        pipe.rpush(&keys.waiting, place.seq).ignore();
    }
}
