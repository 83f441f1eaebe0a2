//! The conformance suite of the domain's ports, written once and run against every storage
//! adapter (in-memory, PostgreSQL, Redis for the queue), so that they provably behave alike.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    reason = "this crate is a test suite: a failed expectation must fail the test that runs it"
)]

use domain::clock::ManualClock;
use domain::service::Ports;

/// What an adapter provides to be put through the suite.
///
/// Cases run in parallel (cargo's test threads) and each calls [`Harness::new_store`] once, so
/// every store must be isolated from the others (PostgreSQL: a database per case; Redis: a key
/// namespace per case). Store times must round-trip at microsecond precision.
pub trait Harness: Sized {
    /// A fresh, empty store whose ports read `clock`. A store that times admission and token
    /// expiry on a clock of its own (PostgreSQL's or Redis' server time in production) MUST
    /// use `clock` for that here, so the suite moves time instead of sleeping.
    fn new_store(clock: ManualClock) -> Self;

    /// Every port backed by this store. A queue-only adapter fills the other ports from the
    /// in-memory store. The fixture replaces `clock` and `random` with its own.
    fn ports(&self) -> Ports;
}
