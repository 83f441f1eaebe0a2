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

port_tests::model_suite!(Postgres, sequential = 48, steps = 48, concurrent = 24);

/// Found by the concurrent model test: an issue batch read the cursor, then committed before an
/// admission tick that had not counted its token. The tick now holds the issue lock to commit.
#[test]
fn an_issue_racing_an_admission_answers_as_of_after_it() {
    port_tests::model::regressions::an_issue_racing_an_admission_answers_as_of_after_it::<Postgres>();
}
