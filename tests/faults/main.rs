//! Fault tests, black-box: the real `concert` binary, each test with its own database, ports and,
//! where a test breaks a server, a private PostgreSQL cluster or Redis of its own. A test
//! breaks something under a recorded load, repairs it, and holds the database to every answer
//! the clients got (see `load`): the contract's guarantees under faults, not timings (except
//! the contract's own bound: a 503 within 5 s).
//!
//! # Layout
//!
//! - `support` (`tests/support`, shared with `tests/e2e.rs`): the binary, databases of a test's
//!   own, a private PostgreSQL cluster and Redis to crash and freeze, free ports, signals.
//! - `harness`: a server to `kill -9` and restart, the recording HTTP client, randomness, SQL
//!   reads.
//! - `load`: the payment-heavy recorded load, the retries of unanswered requests and the audit.
//! - `crash`: `kill -9` of the server mid-load.
//! - `database`: the database going away, hanging, its connections terminated, a row held
//!   locked by another session.
//! - `redis`: the Redis queue store going away.
//! - `protocol`: malformed and abusive HTTP from a raw TCP client.
//!
//! Run one: `cargo test -p concert-e2e --test faults <name> -- --nocapture` (figures are
//! printed).

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    reason = "test code: a failed expectation should panic"
)]

#[path = "../support/mod.rs"]
mod support;

mod harness;
mod load;

mod crash;
mod database;
mod protocol;
mod redis;
