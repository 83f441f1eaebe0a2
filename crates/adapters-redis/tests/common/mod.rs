//! Shared by the Redis test binaries: a private key namespace per test on the machine's Redis,
//! deleted when the test ends (pass or fail), and queues built on it.
#![allow(dead_code, reason = "each test binary uses a different part of this module")]

use std::sync::Arc;

use adapters_local::OsRandom;
use adapters_memory::MemoryStore;
use adapters_redis::{RedisConfig, RedisQueue};
use domain::clock::{Clock, ManualClock};
use domain::ports::{QueueLines, QueueStore};
use domain::service::Ports;

/// The machine's Redis (never flushed: tests only touch their own namespace).
pub const REDIS_URL: &str = "redis://127.0.0.1:6379";

/// A random key prefix, its keys deleted on drop.
#[derive(Debug)]
pub struct Namespace {
    pub url: String,
    pub prefix: String,
}

impl Namespace {
    pub fn new() -> Self {
        Self::on(REDIS_URL)
    }

    pub fn on(url: &str) -> Self {
        Self { url: url.to_owned(), prefix: format!("test-{}", uuid::Uuid::new_v4().simple()) }
    }

    pub fn config(&self) -> RedisConfig {
        RedisConfig::with_url_and_prefix(&self.url, &self.prefix)
    }

    /// A queue on this namespace timed on `clock` (the store's clock in tests).
    pub fn queue(&self, clock: Arc<dyn Clock>) -> RedisQueue {
        RedisQueue::new(&self.config()).unwrap().with_clock(clock)
    }

    /// A queue on this namespace timed on Redis' own `TIME`.
    pub fn queue_on_server_time(&self) -> RedisQueue {
        RedisQueue::new(&self.config()).unwrap()
    }

    pub fn connection(&self) -> redis::Connection {
        redis::Client::open(self.url.as_str()).unwrap().get_connection().unwrap()
    }

    /// Every key of this namespace.
    pub fn keys(&self) -> Vec<String> {
        scan(&mut self.connection(), &self.prefix).unwrap()
    }
}

/// The keys of namespace `prefix`, by `SCAN` (never `KEYS`: the server is shared).
fn scan(con: &mut redis::Connection, prefix: &str) -> redis::RedisResult<Vec<String>> {
    // `{prefix}:*` and every room's `{prefix:room}:*`.
    let pattern = format!("{{{prefix}[}}:]*");
    let (mut cursor, mut keys) = (0_u64, Vec::new());
    loop {
        let (next, batch): (u64, Vec<String>) =
            redis::cmd("SCAN").arg(cursor).arg("MATCH").arg(&pattern).arg("COUNT").arg(1000).query(con)?;
        keys.extend(batch);
        if next == 0 {
            return Ok(keys);
        }
        cursor = next;
    }
}

impl Drop for Namespace {
    fn drop(&mut self) {
        // A private server may be gone by now (outage tests); nothing to clean then.
        let Ok(client) = redis::Client::open(self.url.as_str()) else { return };
        let Ok(mut con) = client.get_connection_with_timeout(std::time::Duration::from_secs(1)) else { return };
        let Ok(keys) = scan(&mut con, &self.prefix) else { return };
        for chunk in keys.chunks(500) {
            let _: Result<i64, _> = redis::cmd("DEL").arg(chunk).query(&mut con);
        }
    }
}

/// Every port: the queue on Redis in `namespace` (timed on `clock`), everything else in
/// `memory` (whose clock is `clock` too): one instance of the service with `QUEUE_STORE=redis`.
/// Every room's line is on Redis too (`lines`), in the namespace's rooms (`{prefix:room}`).
pub fn ports_on(namespace: &Namespace, memory: &MemoryStore, clock: &ManualClock) -> Ports {
    let redis = namespace.queue(Arc::new(clock.clone()));
    let lines: Arc<dyn QueueLines> = Arc::new(redis.lines());
    let queue: Arc<dyn QueueStore> = Arc::new(redis);
    Ports { queue, lines, ..memory.ports(Arc::new(clock.clone()), Arc::new(OsRandom)) }
}

/// The conformance harness: Redis for the queue, memory for the rest, one namespace per case.
pub struct RedisHarness {
    pub ports: Ports,
    // Dropped with the case: deletes the case's keys.
    pub namespace: Namespace,
}

impl port_tests::Harness for RedisHarness {
    fn new_store(clock: ManualClock) -> Self {
        let namespace = Namespace::new();
        Self { ports: ports_on(&namespace, &MemoryStore::new(), &clock), namespace }
    }

    fn ports(&self) -> Ports {
        self.ports.clone()
    }
}
