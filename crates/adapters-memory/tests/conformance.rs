//! The port conformance suite, run against the in-memory store, and again through the
//! process-local caches an instance puts in front of a store (the poll cache over the queue,
//! the settings cache), one cache per store as one instance has: within an instance the caches
//! must be indistinguishable from the store they wrap.

use std::sync::Arc;

use adapters_local::OsRandom;
use adapters_memory::MemoryStore;
use domain::clock::ManualClock;
use domain::service::Ports;
use port_tests::Harness;

/// A fresh memory store per case; its clock is the case's.
struct Memory {
    store: MemoryStore,
    clock: ManualClock,
}

impl Harness for Memory {
    fn new_store(clock: ManualClock) -> Self {
        Self { store: MemoryStore::new(), clock }
    }

    fn ports(&self) -> Ports {
        self.store.ports(Arc::new(self.clock.clone()), Arc::new(OsRandom))
    }
}

port_tests::conformance_suite!(Memory);

mod through_the_caches {
    use std::sync::Arc;
    use std::time::Duration;

    use adapters_local::poll_cache::{CachedQueue, PollCacheBudget, PollCacheSettings};
    use adapters_local::rooms_cache::{CachedLines, CachedRooms};
    use adapters_local::settings_cache::CachedSettings;
    use adapters_local::ticker::ManualTicker;
    use adapters_local::OsRandom;
    use adapters_memory::MemoryStore;
    use domain::clock::ManualClock;
    use domain::ports::{QueueLines, QueueStore, RoomStore, SettingsStore};
    use domain::service::Ports;
    use port_tests::Harness;

    /// A memory store behind the poll caches (main's and every room's) and the settings and
    /// rooms caches. The caches' monotonic
    /// ticker never moves, so a cached cursor stays fresh until this instance's own admission
    /// drops it: the cases see the cache at its most stale within one instance.
    struct CachedMemory {
        ports: Ports,
    }

    impl Harness for CachedMemory {
        fn new_store(clock: ManualClock) -> Self {
            let ports = MemoryStore::new().ports(Arc::new(clock), Arc::new(OsRandom));
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
            Self { ports: Ports { queue, settings, rooms, lines, ..ports } }
        }

        fn ports(&self) -> Ports {
            self.ports.clone()
        }
    }

    port_tests::conformance_suite!(CachedMemory);
}
