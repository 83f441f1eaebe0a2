//! The port conformance suite (`crates/port-tests`) against PostgreSQL, each case on a database
//! of its own cloned from the migrated template: once on the store itself, once through the
//! poll and settings caches over it (as `concert serve` wires them), so the PostgreSQL adapter
//! provably behaves like the in-memory one, time boundaries included (the suite's manual clock
//! is bound into every statement, and is the store's clock too).

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    reason = "test code: a failed expectation must fail the test"
)]

mod common;

mod direct {
    use super::common::Postgres;

    port_tests::conformance_suite!(Postgres);
}

mod cached {
    use super::common::CachedPostgres;

    port_tests::conformance_suite!(CachedPostgres);
}
