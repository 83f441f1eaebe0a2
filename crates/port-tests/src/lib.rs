//! The conformance suite of the domain's ports, written once and run against every storage
//! adapter (in-memory and PostgreSQL), so that both provably behave alike.
//!
//! An adapter crate implements [`Harness`] in one of its integration tests and invokes
//! [`conformance_suite!`], which expands to one `#[test]` per case. Each case builds a fresh
//! store through the harness, drives it mostly through the domain's use cases
//! ([`domain::service::Ticketing`]) and moves a [`ManualClock`] instead of sleeping, so every
//! time boundary is tested exactly and the whole suite stays fast enough for a real database.
//!
//! # Layout
//! - [`queue`]: issuing, reading, admitting and expiring queue tokens.
//! - [`catalogue`]: concerts, bookable schedules and their seat counts, seat maps.
//! - [`reservations`]: seat holds, lapses and their release.
//! - [`accounts`]: balances, credits with a limit, the ledger.
//! - [`payments`]: the payment unit of work, end to end and on every error.
//! - [`concurrency`]: real threads racing for one seat, one account, one reservation.
//! - [`fixture`]: the shared set-up.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    reason = "this crate is a test suite: a failed expectation must fail the test that runs it"
)]

use domain::clock::ManualClock;
use domain::demo::DemoCatalogue;
use domain::service::Ports;

pub mod accounts;
pub mod catalogue;
pub mod concurrency;
pub mod fixture;
pub mod payments;
pub mod queue;
pub mod reservations;

/// What an adapter provides to be put through the suite.
///
/// Cases run in parallel (cargo's test threads) and each calls [`Harness::new_store`] once, so
/// every store must be isolated from the others (PostgreSQL: a database per case, e.g. cloned
/// from a migrated template). The [`concurrency`] cases race up to 200 threads on one store;
/// a connection pool only needs to let them queue, not serve them all at once. Store times
/// must round-trip at microsecond precision (the clock never carries finer).
pub trait Harness: Sized {
    /// A fresh, empty store (PostgreSQL: its own database) whose ports read `clock`.
    fn new_store(clock: ManualClock) -> Self;
    /// Every port backed by this store; tokens from [`domain::queue::OsTokenGenerator`].
    fn ports(&self) -> Ports;
    /// Inserts the catalogue's concerts, schedules and seats.
    fn seed(&self, catalogue: &DemoCatalogue);
}

/// Expands to one `#[test]` per conformance case, run against `$harness`.
///
/// ```ignore
/// port_tests::conformance_suite!(MyHarness);
/// ```
#[macro_export]
macro_rules! conformance_suite {
    ($harness:ty) => {
        $crate::__conformance_cases!($harness;
            queue::issue_gives_one_token_per_user_and_returns_the_live_one,
            queue::issue_gives_a_new_token_once_the_old_one_expired,
            queue::sequence_is_gapless_and_position_counts_waiting_tokens_ahead,
            queue::find_and_find_with_cursor_return_the_stored_token,
            queue::admission_is_fifo_over_several_ticks,
            queue::admission_admits_at_most_the_batch,
            queue::admission_respects_max_active,
            queue::admission_is_not_due_within_the_interval,
            queue::expire_tokens_at_the_exact_boundary_and_only_once,
            catalogue::concerts_are_listed_by_title,
            catalogue::schedules_are_future_only_ascending_with_counts,
            catalogue::schedule_counts_follow_holds_payments_and_lapses,
            catalogue::seats_are_listed_by_number_with_their_claims,
            catalogue::unknown_concert_and_schedule_are_none,
            reservations::hold_stores_a_held_reservation,
            reservations::seat_is_taken_while_held_or_sold,
            reservations::no_such_seat_for_wrong_unknown_or_started_schedule,
            reservations::seat_can_be_held_again_at_the_exact_lapse,
            reservations::release_lapsed_changes_each_hold_once,
            accounts::unknown_user_has_zero_balance_and_empty_ledger,
            accounts::credit_adds_and_records_a_charge,
            accounts::credit_over_the_limit_changes_nothing,
            accounts::ledger_sums_to_the_balance,
            payments::pay_debits_sells_and_expires_the_token,
            payments::pay_unknown_or_foreign_reservation_changes_nothing,
            payments::pay_twice_is_already_paid,
            payments::pay_at_the_exact_lapse_is_hold_expired,
            payments::pay_with_insufficient_balance_changes_nothing,
            payments::failed_work_rolls_back_every_write,
            concurrency::one_of_many_concurrent_holds_wins,
            concurrency::concurrent_charges_lose_no_update,
            concurrency::concurrent_payments_debit_once,
            concurrency::concurrent_issues_for_one_user_yield_one_token,
            concurrency::concurrent_admissions_admit_at_most_one_batch,
        );
    };
}

/// Implementation detail of [`conformance_suite!`].
#[doc(hidden)]
#[macro_export]
macro_rules! __conformance_cases {
    ($harness:ty; $($module:ident :: $case:ident),* $(,)?) => {
        $(
            #[test]
            fn $case() {
                $crate::$module::$case::<$harness>();
            }
        )*
    };
}
