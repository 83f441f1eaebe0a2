//! Shared by the Redis test binaries: a private key namespace per test on the machine's Redis,
//! deleted when the test ends (pass or fail), and queues built on it.
#![allow(dead_code, reason = "each test binary uses a different part of this module")]

use std::sync::Arc;

use adapters_local::OsRandom;
use adapters_memory::MemoryStore;
use adapters_redis::testing::{scan, TestConnection};
use adapters_redis::{RedisConfig, RedisQueue};
use domain::clock::{Clock, ManualClock};
use domain::ports::{QueueLines, QueueStore};
use domain::service::Ports;

/// The machine's Redis (never flushed: tests only touch their own namespace).
pub const REDIS_URL: &str = "redis://127.0.0.1:6379";

/// Where this test binary's namespaces live: the machine's Redis, or, in a binary whose name
/// starts with `cluster` (the same test files compiled again by `tests/cluster.rs`), the
/// binary's own Redis Cluster of 3 masters and 3 replicas (`adapters_redis::testing::shared`).
pub fn default_url() -> String {
    if on_cluster() {
        adapters_redis::testing::shared().url()
    } else {
        REDIS_URL.to_owned()
    }
}

/// Whether this test binary runs on its own Redis Cluster (see [`default_url`]).
pub fn on_cluster() -> bool {
    env!("CARGO_CRATE_NAME").starts_with("cluster")
}

/// A random key prefix, its keys deleted on drop.
#[derive(Debug)]
pub struct Namespace {
    pub url: String,
    pub prefix: String,
}

impl Namespace {
    pub fn new() -> Self {
        Self::on(&default_url())
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

    /// A connection to the Redis or cluster of this namespace (commands routed by slot).
    pub fn connection(&self) -> TestConnection {
        TestConnection::open(&self.url).unwrap()
    }

    /// Every key of this namespace (on a cluster: of every master).
    pub fn keys(&self) -> Vec<String> {
        scan(&self.url, &pattern(&self.prefix)).unwrap().into_iter().map(|(_, key)| key).collect()
    }
}

/// `{prefix}:*` and every room's `{prefix:room}:*`.
fn pattern(prefix: &str) -> String {
    format!("{{{prefix}[}}:]*")
}

impl Drop for Namespace {
    fn drop(&mut self) {
        // A private server may be gone by now (outage tests); nothing to clean then. `SCAN`,
        // never `KEYS`: the server is shared; per node on a cluster, each key deleted on the
        // node that holds it.
        let Ok(keys) = scan(&self.url, &pattern(&self.prefix)) else { return };
        let mut by_node: std::collections::BTreeMap<String, Vec<String>> = std::collections::BTreeMap::new();
        for (node, key) in keys {
            by_node.entry(node).or_default().push(key);
        }
        for (node, keys) in by_node {
            let Ok(client) = redis::Client::open(node.as_str()) else { continue };
            let Ok(mut con) = client.get_connection_with_timeout(std::time::Duration::from_secs(1)) else { continue };
            let mut pipe = redis::pipe();
            for key in &keys {
                // One key per `DEL`: a cluster node refuses keys of several slots in one.
                pipe.cmd("DEL").arg(key).ignore();
            }
            let _: Result<(), _> = pipe.query(&mut con);
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
