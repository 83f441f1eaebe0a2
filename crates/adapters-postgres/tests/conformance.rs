//! The port conformance suite (`crates/port-tests`), run against PostgreSQL: each case gets its
//! own database cloned from the migrated template, so the PostgreSQL adapter provably behaves
//! like the in-memory one, time boundaries included (the manual clock's `now` is bound into
//! every statement).

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    reason = "test code: a failed expectation must fail the test"
)]

mod common;

port_tests::conformance_suite!(common::Postgres);
