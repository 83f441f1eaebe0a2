//! What the PostgreSQL test binaries share: the conformance harnesses (a store on a database of
//! its own, directly or behind the poll and settings caches) and the invariant check every race
//! ends with.

#![allow(dead_code, reason = "each test binary uses a different part")]
#![allow(clippy::expect_used, reason = "test support: a failed set-up must fail the test")]

use std::sync::Arc;
use std::time::Duration;

use adapters_local::poll_cache::{CachedQueue, PollCacheBudget, PollCacheSettings};
use adapters_local::rooms_cache::{CachedLines, CachedRooms};
use adapters_local::settings_cache::CachedSettings;
use adapters_local::ticker::SystemTicker;
use adapters_local::OsRandom;
use adapters_postgres::testing::TestDatabase;
use adapters_postgres::{invariants, PgStore};
use domain::clock::ManualClock;
use domain::service::Ports;
use port_tests::Harness;

/// A store on a database of its own, timing admission and expiry on the suite's clock. Field
/// order matters: the store (and its pool) is dropped before the database.
pub struct Postgres {
    pub store: PgStore,
    pub clock: ManualClock,
    pub db: TestDatabase,
}

impl Postgres {
    /// A store on a fresh database whose store clock is `clock`.
    pub fn on(clock: ManualClock) -> Self {
        let db = TestDatabase::create().expect("test database");
        let store = db.store().expect("store").with_clock(Arc::new(clock.clone()));
        Self { store, clock, db }
    }
}

impl Harness for Postgres {
    fn new_store(clock: ManualClock) -> Self {
        Self::on(clock)
    }

    fn ports(&self) -> Ports {
        self.store.ports(Arc::new(self.clock.clone()), Arc::new(OsRandom))
    }
}

/// The same store behind the poll caches (`CachedQueue`, main's and every room's through
/// `CachedLines`), the settings cache (`CachedSettings`) and the rooms cache (`CachedRooms`),
/// as `concert serve` wires them: the suite through the caches over
/// PostgreSQL. The caches measure freshness on the real monotonic clock; the suite's cases
/// read their own writes through the same cache, which the caches serve at once.
pub struct CachedPostgres {
    pub pg: Postgres,
    ports: Ports,
}

impl Harness for CachedPostgres {
    fn new_store(clock: ManualClock) -> Self {
        let pg = Postgres::on(clock);
        let ports = pg.ports();
        let queue =
            Arc::new(CachedQueue::new(ports.queue.clone(), Arc::new(SystemTicker), PollCacheSettings::default()));
        let settings =
            Arc::new(CachedSettings::new(ports.settings.clone(), Arc::new(SystemTicker), Duration::from_millis(250)));
        let rooms = Arc::new(CachedRooms::new(ports.rooms.clone(), Arc::new(SystemTicker), Duration::from_millis(250)));
        let lines = Arc::new(CachedLines::new(
            ports.lines.clone(),
            Arc::new(SystemTicker),
            PollCacheSettings::default(),
            PollCacheBudget::default(),
        ));
        Self { ports: Ports { queue, settings, rooms, lines, ..ports }, pg }
    }

    fn ports(&self) -> Ports {
        self.ports.clone()
    }
}

/// Fails the test with every violated invariant.
pub fn assert_consistent(store: &PgStore) {
    let problems = invariants::check(store).expect("invariants query");
    assert!(problems.is_empty(), "invariants violated:\n{}", problems.join("\n"));
}
