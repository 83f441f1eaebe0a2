//! The model-based test of the whole service (`port_tests::model`) on the in-memory store: a
//! fresh store per case, its clock the case's.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, reason = "tests")]

use std::sync::Arc;

use adapters_local::OsRandom;
use adapters_memory::MemoryStore;
use domain::clock::ManualClock;
use domain::service::Ports;
use port_tests::model::ModelStore;
use port_tests::Harness;

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

impl ModelStore for Memory {}

port_tests::model_suite!(Memory, sequential = 256, steps = 64, concurrent = 64);
