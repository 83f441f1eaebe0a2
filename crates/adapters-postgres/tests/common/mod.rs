//! What the PostgreSQL test binaries share: the conformance harness (a store on a database of
//! its own) and the invariant check every race ends with.

#![allow(dead_code, reason = "each test binary uses a different part")]
#![allow(clippy::expect_used, reason = "test support: a failed set-up must fail the test")]

use std::sync::Arc;

use adapters_postgres::testing::TestDatabase;
use adapters_postgres::{invariants, PgStore};
use domain::clock::ManualClock;
use domain::demo::DemoCatalogue;
use domain::queue::OsTokenGenerator;
use domain::service::Ports;
use port_tests::Harness;

/// A store on a database of its own. Field order matters: the store (and its pool) is
/// dropped before the database.
pub struct Postgres {
    pub store: PgStore,
    pub clock: ManualClock,
    pub db: TestDatabase,
}

impl Harness for Postgres {
    fn new_store(clock: ManualClock) -> Self {
        let db = TestDatabase::create().expect("test database");
        let store = db.store().expect("store");
        Self { store, clock, db }
    }

    fn ports(&self) -> Ports {
        self.store.ports(Arc::new(self.clock.clone()), Arc::new(OsTokenGenerator))
    }

    fn seed(&self, catalogue: &DemoCatalogue) {
        assert!(self.store.seed(catalogue).expect("seed"));
    }
}

/// Fails the test with every violated invariant.
pub fn assert_consistent(store: &PgStore) {
    let problems = invariants::check(store).expect("invariants query");
    assert!(problems.is_empty(), "invariants violated:\n{}", problems.join("\n"));
}
