//! The model-based test of the whole service (`port_tests::model`) on PostgreSQL: each case a
//! fresh database cloned from the migrated template (the conformance harness of `common`), its
//! clock the case's, and after every step the adapter's own invariant SQL besides the model's
//! checks.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, reason = "tests")]

mod common;

use adapters_postgres::invariants;
use common::Postgres;
use port_tests::model::ModelStore;

impl ModelStore for Postgres {
    fn store_problems(&self) -> Vec<String> {
        invariants::check(&self.store).expect("the invariants query runs")
    }
}

port_tests::model_suite!(Postgres, sequential = 40, steps = 40, concurrent = 16);
