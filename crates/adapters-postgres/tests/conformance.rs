//! The port conformance suite (`crates/port-tests`), run against PostgreSQL: each case gets its
//! own database cloned from the migrated template, so the PostgreSQL adapter provably behaves
//! like the in-memory one, time boundaries included (the manual clock's `now` is bound into
//! every statement).

use std::sync::Arc;

use adapters_postgres::testing::TestDatabase;
use adapters_postgres::PgStore;
use domain::clock::ManualClock;
use domain::demo::DemoCatalogue;
use domain::queue::OsTokenGenerator;
use domain::service::Ports;
use port_tests::Harness;

/// A store on a database of its own. Field order matters: the store (and its pool) goes
/// before the database is dropped.
struct Postgres {
    store: PgStore,
    clock: ManualClock,
    _db: TestDatabase,
}

impl Harness for Postgres {
    fn new_store(clock: ManualClock) -> Self {
        let db = TestDatabase::create().expect("test database");
        let store = db.store().expect("store");
        Self { store, clock, _db: db }
    }

    fn ports(&self) -> Ports {
        self.store.ports(Arc::new(self.clock.clone()), Arc::new(OsTokenGenerator))
    }

    fn seed(&self, catalogue: &DemoCatalogue) {
        assert!(self.store.seed(catalogue).expect("seed"));
    }
}

port_tests::conformance_suite!(Postgres);
