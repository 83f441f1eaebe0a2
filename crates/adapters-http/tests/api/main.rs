//! The HTTP contract, end to end through actix's test service on the in-memory store with a
//! manual clock: every endpoint, every error row, idempotent retries, the hold limit, the rate
//! limit behind trusted proxies, store slots, the operator API, the documents and the page.
//! Admission is driven by calling `Ticketing::admit` directly. Nothing here reads the
//! developer's environment. (Metrics are in `tests/metrics.rs`: the recorder is global, so its
//! counts are checked in a process of their own.)

// Helpers outside `#[test]` fns are test code too: a failed expectation should panic there.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    reason = "test code: a failed expectation must fail the test"
)]

#[path = "../common/mod.rs"]
mod common;

use std::sync::{mpsc, Arc, Mutex};
use std::time::Duration as StdDuration;

use actix_web::http::Method;
use actix_web::test::TestRequest;
use adapters_http::ApiState;
use adapters_local::poll_cache::{CachedQueue, PollCacheSettings};
use adapters_local::settings_cache::CachedSettings;
use adapters_local::ticker::ManualTicker;
use common::*;
use domain::account::{CreditOutcome, CreditRequest, LedgerEntry, LedgerQuery};
use domain::error::StoreError;
use domain::idempotency::{Claimed, IdempotencyGuard};
use domain::ids::UserId;
use domain::money::Won;
use domain::ports::AccountStore;
use domain::service::{Ports, Ticketing};
use serde_json::{json, Value};
use time::Duration;
use uuid::Uuid;

mod admin;
mod balance;
mod catalogue;
mod console;
mod documents;
mod doubles;
mod http_errors;
mod idempotency;
mod payments;
mod queue;
mod rate_limit;
mod reservations;
mod rooms;
mod store_failures;

use doubles::*;
mod connection;
