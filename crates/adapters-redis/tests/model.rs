//! The model-based test of the whole service (`port_tests::model`) with the queue on Redis and
//! every other port on the in-memory store (one instance with `QUEUE_STORE=redis`): each case
//! a key namespace of its own on the machine's Redis, deleted when the case ends, the queue
//! timed on the case's clock. A payment commits in the payment store and uses its token up in
//! Redis right after, so the concurrent variant lets that use-up land later than the commit.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, reason = "tests")]

mod common;

use common::RedisHarness;
use port_tests::model::ModelStore;

impl ModelStore for RedisHarness {
    const QUEUE_APART: bool = true;
}

port_tests::model_suite!(RedisHarness, sequential = 256, steps = 64, concurrent = 64);

#[test]
fn an_issue_racing_an_admission_answers_as_of_after_it() {
    port_tests::model::regressions::an_issue_racing_an_admission_answers_as_of_after_it::<RedisHarness>();
}
