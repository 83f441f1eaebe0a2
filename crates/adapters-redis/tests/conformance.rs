//! The queue's conformance suite against Redis: `RedisQueue` (its clock the case's
//! `ManualClock`, so the suite moves time instead of sleeping) for the queue, the in-memory
//! store for every other port (payments included: a token that pays is recorded there and used
//! up in Redis right after). Each case runs in a key namespace of its own, deleted when it
//! ends. Then the same suite through the process-local caches an instance puts in front of
//! its stores (the poll cache over the queue, the settings cache).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, reason = "tests")]

mod common;

use common::RedisHarness as Redis;

port_tests::queue_suite!(Redis);
port_tests::rooms_suite!(Redis);

mod through_the_caches {
    use std::sync::Arc;
    use std::time::Duration;

    use adapters_local::poll_cache::{CachedQueue, PollCacheBudget, PollCacheSettings};
    use adapters_local::rooms_cache::{CachedLines, CachedRooms};
    use adapters_local::settings_cache::CachedSettings;
    use adapters_local::ticker::ManualTicker;
    use domain::clock::ManualClock;
    use domain::ports::{QueueLines, QueueStore, RoomStore, SettingsStore};
    use domain::service::Ports;
    use port_tests::Harness;

    use super::common::{ports_on, Namespace};

    /// Redis behind one poll cache, memory settings behind one settings cache, as one
    /// instance has them. The caches' monotonic ticker never moves, so a cached cursor stays
    /// fresh until this instance's own admission drops it: the cases see the cache at its most
    /// stale within one instance.
    struct CachedRedis {
        ports: Ports,
        // Dropped with the case: deletes the case's keys.
        _namespace: Namespace,
    }

    impl Harness for CachedRedis {
        fn new_store(clock: ManualClock) -> Self {
            let namespace = Namespace::new();
            let ports = ports_on(&namespace, &adapters_memory::MemoryStore::new(), &clock);
            let ticker = Arc::new(ManualTicker::new());
            let queue: Arc<dyn QueueStore> =
                Arc::new(CachedQueue::new(ports.queue.clone(), ticker.clone(), PollCacheSettings::default()));
            let settings: Arc<dyn SettingsStore> =
                Arc::new(CachedSettings::new(ports.settings.clone(), ticker.clone(), Duration::from_secs(1)));
            let rooms: Arc<dyn RoomStore> =
                Arc::new(CachedRooms::new(ports.rooms.clone(), ticker.clone(), Duration::from_secs(1)));
            let lines: Arc<dyn QueueLines> = Arc::new(CachedLines::new(
                ports.lines.clone(),
                ticker,
                PollCacheSettings::default(),
                PollCacheBudget::default(),
            ));
            Self { ports: Ports { queue, settings, rooms, lines, ..ports }, _namespace: namespace }
        }

        fn ports(&self) -> Ports {
            self.ports.clone()
        }
    }

    port_tests::queue_suite!(CachedRedis);
    port_tests::rooms_suite!(CachedRedis);
}
