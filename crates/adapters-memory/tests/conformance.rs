//! The port conformance suite, run against the in-memory store, plus what only this adapter
//! has: the failure switch.

use std::sync::Arc;

use adapters_memory::MemoryStore;
use domain::clock::{Clock, ManualClock};
use domain::demo::{self, DemoCatalogue};
use domain::queue::OsTokenGenerator;
use domain::service::Ports;
use port_tests::Harness;

/// A fresh memory store per case.
struct Memory {
    store: MemoryStore,
    clock: ManualClock,
}

impl Harness for Memory {
    fn new_store(clock: ManualClock) -> Self {
        Self { store: MemoryStore::new(), clock }
    }

    fn ports(&self) -> Ports {
        self.store.ports(Arc::new(self.clock.clone()), Arc::new(OsTokenGenerator))
    }

    fn seed(&self, catalogue: &DemoCatalogue) {
        assert!(self.store.seed(catalogue));
    }
}

port_tests::conformance_suite!(Memory);

#[test]
fn seeding_is_idempotent() {
    let store = MemoryStore::new();
    let clock = ManualClock::at_epoch();
    let catalogue = demo::catalogue(clock.now());
    assert!(store.seed(&catalogue));
    assert!(!store.seed(&catalogue));
    let ports = store.ports(Arc::new(clock.clone()), Arc::new(OsTokenGenerator));
    assert_eq!(ports.catalogue.concerts().unwrap().len(), catalogue.concerts.len());
    for s in &catalogue.schedules {
        assert_eq!(ports.catalogue.seats(s.id).unwrap().unwrap().len(), s.seats.len());
    }
}

/// The same suite through the poll cache ([`domain::queue_cache::CachedQueue`]) in front of
/// the queue port, one cache per store as one instance has: within an instance the cache must be
/// indistinguishable from the store it wraps.
mod through_the_poll_cache {
    use std::sync::Arc;

    use adapters_memory::MemoryStore;
    use domain::clock::ManualClock;
    use domain::demo::DemoCatalogue;
    use domain::ports::QueueStore;
    use domain::queue::OsTokenGenerator;
    use domain::queue_cache::{CachedQueue, QueueCacheSettings};
    use domain::service::Ports;
    use port_tests::Harness;

    struct CachedMemory {
        store: MemoryStore,
        clock: ManualClock,
        queue: Arc<dyn QueueStore>,
    }

    impl Harness for CachedMemory {
        fn new_store(clock: ManualClock) -> Self {
            let store = MemoryStore::new();
            let inner = store.ports(Arc::new(clock.clone()), Arc::new(OsTokenGenerator)).queue;
            let queue = Arc::new(CachedQueue::new(inner, Arc::new(clock.clone()), QueueCacheSettings::default()));
            Self { store, clock, queue }
        }

        fn ports(&self) -> Ports {
            let ports = self.store.ports(Arc::new(self.clock.clone()), Arc::new(OsTokenGenerator));
            Ports { queue: self.queue.clone(), ..ports }
        }

        fn seed(&self, catalogue: &DemoCatalogue) {
            assert!(self.store.seed(catalogue));
        }
    }

    port_tests::conformance_suite!(CachedMemory);
}
