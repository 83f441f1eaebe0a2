//! A model-based test of the whole service: generated sequences of every use case run through
//! `domain::service::Ticketing` on a real store and, beside it, through a small reference model
//! in plain Rust data; after every step the store's answer must be exactly the model's (the
//! `Ok` value, or the exact error variant), the store's whole state as its ports show it must
//! be the model's, and the service's invariants must hold on the store.
//!
//! # What is generated
//!
//! [`op::Op`]: issuing and polling tokens, admission ticks, token expiry, holds (of seats that
//! exist, of another schedule, unknown ones), reading reservations, hold release, payments and
//! charges with and without an `Idempotency-Key` (three keys per user, shared by charges and
//! payments), retries of the last keyed request with the same or a different request, balance
//! and history reads (with `before` and `limit` on both sides of their rules), the key purge,
//! operator changes of the waiting room (pause, N, M, TTL, cap) and clock moves: by fixed
//! amounts, and onto, just before and just after the next boundary (admission due, token
//! expiry, hold lapse, key expiry, a schedule's start). Ops name things abstractly ("user 1's
//! latest token"), so any op is valid in any state and shrinking can drop any step.
//!
//! Rooms: joining a room (`issue_token_in`), polling a room's token (a sight), the rooms'
//! scheduler check (`tick_rooms`), an operator's change of a room (pause, close, N), a room's
//! view, and the gated reads and writes (a concert's schedules, a schedule's seats, holds,
//! payments) with a token of any room; protected ops present room tokens too, and clock moves
//! also go onto, just before and just after a room's (pre-queue) opening, the first moment a
//! silent WAITING token counts as absent, and a room's next admission.
//!
//! The world ([`world`]) is three users, two concerts (the first with two schedules, the
//! second with one) of seven seats in all, prices of a few thousand won, two live holds per
//! user, and balances of zero, 10,000 won and 5,000 won under the limit, so every error of
//! every use case is a few steps away. Besides `main` (which gates the first concert) it has
//! two rooms, created at set-up: `a` sells the second concert, takes joiners 10 s after the
//! start, opens 150 s after it with a draw, drops buyers silent for 30 s and admits two every
//! 30 s; `b` is open from the start, gates no concert and admits one a minute.
//!
//! The case's randomness ([`world::ModelRandom`]) is as predictable as the model needs: the
//! seed of a draw is known per case, and token values start with a known scramble of the order
//! they were taken in, so the model knows the draw's order of entrants (by value) without it
//! being the order of issue.
//!
//! # What is checked
//!
//! After every step ([`sequential::Sut::step`], [`sequential::Sut::check`]): the answer; every
//! token as read, the operator's view, every reservation, both seat maps, the bookable
//! schedules, the sales report, every balance and ledger, every idempotency record; and the
//! invariants ([`view::invariants`]): no seat with two live claims, balance = ledger sum and
//! never negative, one payment per PAID reservation (of its price, by its holder), at most one
//! payment per token, token seqs gapless and WAITING positions exactly `1..=waiting` in seq
//! order, one live token per user, at most N admitted per tick and ticks at least M apart, at
//! most `MAX_HOLDS_PER_USER` live holds, catalogue counts that agree with the seat maps; per
//! room, seqs gapless, WAITING positions exactly `1..=waiting` once the order is known, one
//! live token per user and at most the room's N per tick; no token used up but by a payment of
//! its own room's concert; plus whatever the store checks itself
//! ([`ModelStore::store_problems`]: PostgreSQL runs its `invariants` SQL). Every room's tokens
//! (read through the line's port, as a read through the use case would count as a sight) and
//! every room's view are compared with the model's too, the recorded draw (time, entrants,
//! seed) included.
//!
//! [`concurrent`] races generated steps from several threads and checks the invariants, the
//! order-independent counts, and that some interleaving explains every answer (linearizability
//! against the model). Room joins, room polls and rooms checks race too: a poll or re-join
//! notes its sight after its read, and a check takes the sights from memory, writes them, then
//! per room draws, admits and expires, each an atomic phase of its own.
//!
//! # Running it
//!
//! An adapter's test file implements [`ModelStore`] (a [`crate::Harness`] plus an optional
//! check of its own) and invokes [`crate::model_suite!`], which runs [`sequential_suite`] and
//! [`concurrent_suite`] with the case counts it names. Runs are deterministic: the seed is fixed
//! ([`SEED`]) unless `PROPTEST_RNG_SEED` names another, and `PROPTEST_CASES` overrides the
//! count. A failure is shrunk and its seed appended to the file the suite names under the
//! adapter's `proptest-regressions/` (commit it: it is replayed first on every run, for as long
//! as the generators stay as they are); a failure that shows a real bug also gets an explicit
//! test in [`regressions`], which does not depend on the generators. With `MODEL_COVERAGE`
//! set (and `-- --nocapture`), each suite prints how often each kind of answer came up, to see
//! that the generators reach every one.
//!
//! Case counts (the memory store runs the most; PostgreSQL makes a database per case):
//!
//! | store | sequential | steps | concurrent (4 threads × 1-3 steps) |
//! | --- | --- | --- | --- |
//! | memory | 512 | 1-64 | 256 |
//! | PostgreSQL | 48 | 1-48 | 24 |
//! | Redis queue + memory | 256 | 1-64 | 64 |
//!
//! # Layout
//! - [`world`]: users, catalogue, policy, starting settings and balances.
//! - [`op`]: the abstract ops and their generators.
//! - [`reference`]: the model, how it resolves an op and what each step must answer.
//! - [`sut`]: running a step through the use cases; the model's expectation in domain types.
//! - [`view`]: the store read through its ports, compared with the model; the invariants.
//! - [`sequential`]: the state-machine test.
//! - [`concurrent`]: the racing variant and its linearizability search.
//! - [`regressions`]: explicit sequences and races, kept from failures.

pub mod concurrent;
pub mod op;
pub mod reference;
pub mod regressions;
pub mod sequential;
pub mod sut;
pub mod view;
pub mod world;

use std::collections::BTreeMap;

use proptest::collection::vec;
use proptest::test_runner::{Config, FileFailurePersistence, RngSeed, TestRunner};
use proptest_state_machine::{ReferenceStateMachine, StateMachineTest};

use crate::Harness;

/// A store put through the model: a [`Harness`] (each case a fresh store on the case's clock)
/// and, optionally, the store's own consistency check.
pub trait ModelStore: Harness + 'static {
    /// Whether the queue lives apart from the payment store (Redis), so that a payment uses its
    /// token up by a call of its own after it committed.
    const QUEUE_APART: bool = false;

    /// Violations the store finds in itself (PostgreSQL: its `invariants` SQL); none by default.
    fn store_problems(&self) -> Vec<String> {
        Vec::new()
    }
}

/// The seed every run starts from unless `PROPTEST_RNG_SEED` says otherwise, so CI runs the
/// same cases every time.
pub const SEED: u64 = 0x6d6f_6465_6c5f_7431;

/// How much of the model to run.
#[derive(Debug, Clone, Copy)]
pub struct Budget {
    /// Cases (`PROPTEST_CASES` overrides).
    pub cases: u32,
    /// Most steps in a sequential case, or in a concurrent case's generated prefix.
    pub steps: usize,
    /// Racing threads (concurrent only).
    pub threads: usize,
    /// Most steps per racing thread (concurrent only).
    pub steps_per_thread: usize,
    /// Where failing seeds are kept, relative to the adapter's crate (`None`: nowhere, for
    /// runs that are meant to fail).
    pub regressions: Option<&'static str>,
}

/// How often each kind of outcome came up, when `MODEL_COVERAGE` is set: printed at the end of
/// a suite, to see that the generators reach every answer.
static COVERAGE: std::sync::Mutex<BTreeMap<String, u64>> = std::sync::Mutex::new(BTreeMap::new());

/// Counts one outcome (when `MODEL_COVERAGE` is set).
pub fn cover(expect: &reference::Expect) {
    if std::env::var_os("MODEL_COVERAGE").is_some() {
        cover_label(expect.label());
    }
}

/// Counts one labelled outcome.
pub fn cover_label(label: String) {
    *COVERAGE.lock().unwrap_or_else(std::sync::PoisonError::into_inner).entry(label).or_default() += 1;
}

pub(crate) fn print_coverage(what: &str) {
    if std::env::var_os("MODEL_COVERAGE").is_some() {
        let counts = std::mem::take(&mut *COVERAGE.lock().unwrap_or_else(std::sync::PoisonError::into_inner));
        let lines: Vec<String> = counts.iter().map(|(k, n)| format!("{n:>8}  {k}")).collect();
        eprintln!("outcomes of the {what} model test:\n{}", lines.join("\n"));
    }
}

fn config(budget: &Budget) -> Config {
    let mut config = Config::default();
    if std::env::var_os("PROPTEST_CASES").is_none() {
        config.cases = budget.cases;
    }
    if std::env::var_os("PROPTEST_RNG_SEED").is_none() {
        config.rng_seed = RngSeed::Fixed(SEED);
    }
    config.failure_persistence = match budget.regressions {
        Some(path) => Some(Box::new(FileFailurePersistence::Direct(path))),
        None => Some(Box::new(FileFailurePersistence::Off)),
    };
    config
}

fn fail(what: &str, e: impl std::fmt::Display) -> ! {
    panic!("the model-based {what} test failed; the shrunk case is at the end:\n{e}")
}

/// Runs the sequential model test on store `H`.
///
/// # Panics
/// On the first divergence (after shrinking it).
pub fn sequential_suite<H: ModelStore>(budget: &Budget) {
    let config = config(budget);
    let strategy = sequential::Reference::sequential_strategy(1..=budget.steps);
    let mut runner = TestRunner::new(config.clone());
    let result = runner.run(&strategy, |(initial, transitions, seen)| {
        sequential::ModelTest::<H>::test_sequential(config.clone(), initial, transitions, seen);
        Ok(())
    });
    print_coverage("sequential");
    if let Err(e) = result {
        fail("sequential", e);
    }
}

/// Runs the concurrent model test on store `H`.
///
/// # Panics
/// On the first failure (after shrinking it).
pub fn concurrent_suite<H: ModelStore>(budget: &Budget) {
    let config = config(budget);
    let strategy = (
        vec(op::op(false), 0..=budget.steps),
        vec(vec(concurrent::racing_op(), 1..=budget.steps_per_thread), budget.threads),
    );
    let mut runner = TestRunner::new(config);
    let result = runner.run(&strategy, |(prefix, threads)| {
        concurrent::run_case::<H>(&prefix, &threads);
        Ok(())
    });
    print_coverage("concurrent");
    if let Err(e) = result {
        fail("concurrent", e);
    }
}

/// Runs one explicit sequence (a kept regression) on store `H`, checking every step.
///
/// # Panics
/// When the store diverges from the model.
pub fn replay<H: ModelStore>(ops: &[op::Op]) {
    let mut sut = sequential::Sut::<H>::start();
    for op in ops {
        sut.step(op);
        sut.check();
    }
}
