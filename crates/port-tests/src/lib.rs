//! The conformance suite of the domain's ports, written once and run against every storage
//! adapter (in-memory, PostgreSQL, and Redis for the queue), so that they provably behave alike.
//!
//! The port contracts in `domain::ports` are the specification; each case here pins one of
//! them, both sides of every time boundary, through the domain's use cases
//! ([`domain::service::Ticketing`]) and the ports themselves. Where a store restates a domain
//! rule in its own language (SQL, Lua: `SeatRecord::status_at`, `AdmissionPolicy::is_due`,
//! `may_hold_another`, `credit_fits`, `ScheduleSummary::is_bookable_at`), a case compares the
//! store's answer with the domain's at the boundary, so a divergence fails here rather than
//! in production.
//!
//! # Running it against an adapter
//!
//! An adapter implements [`Harness`] in one of its integration tests and invokes the macros:
//!
//! ```ignore
//! struct Postgres { /* a database of its own */ }
//! impl port_tests::Harness for Postgres { /* new_store, ports */ }
//! port_tests::conformance_suite!(Postgres);
//! ```
//!
//! [`conformance_suite!`] is every suite below; each per-port macro can also be invoked on its
//! own (at most once per module), so a queue-only adapter (Redis, whose harness fills the other
//! ports from the in-memory store) runs [`queue_suite!`] and [`settings_suite!`]. Each macro
//! expands to a module (`port_queue`, `port_settings`, ...) holding one `#[test]` per case,
//! which builds a fresh store through the harness, seeds what it needs through the ports, and
//! moves a [`ManualClock`] instead of sleeping.
//!
//! A harness MUST:
//! - make every store isolated from the others (cases run in parallel: PostgreSQL a database
//!   per case, Redis a key namespace per case);
//! - time admission and token expiry on the `ManualClock` it is given (the store's clock), and
//!   keep times at microsecond precision;
//! - start the waiting-room settings at `QueueSettings::default()` (the settings cases check
//!   them before any update);
//! - let up to 200 threads call one store at once (they may queue for connections).
//!
//! The fixture replaces the `clock` and `random` of [`Harness::ports`] with the case's
//! `ManualClock` and the operating system's randomness.
//!
//! # Layout
//! - [`fixture`]: the shared set-up: the store, the clock, the test catalogue, admitted users.
//! - [`queue`]: issuing, reading, admitting (FIFO, N, cap, interval, store clock, pause),
//!   expiring and using up tokens, stats, and the queue's races.
//! - [`settings`]: the waiting room's live settings.
//! - [`audit`]: the operator log, written with each change it records.
//! - [`catalogue`]: concerts, bookable schedules and their counts, seat maps, the operator's
//!   catalogue and the sales report.
//! - [`reservations`]: holds, the hold limit, lapses and their batched release.
//! - [`accounts`]: balances, credits under the limit, the ledger and its pages.
//! - [`payments`]: the read/decide/apply unit of work: every effect or none, a token pays once.
//! - [`idempotency`]: keyed charges and payments: replay, reuse, refusals, purge, duplicates.
//! - [`commit`]: no write for a caller that gave up (the commit agreement, `domain::call`).
//! - [`concurrency`]: real threads racing on one seat, one user's holds, one account, one
//!   reservation, and the hold release; [`concurrency::race`] releases them together.
//! - [`rooms`]: a line per room, the draw, presence and abandoned places, the rooms' gate on
//!   concerts, the operator's rooms, and their races.
//! - [`model`]: the model-based test of the whole service (generated use-case sequences
//!   against a reference model, sequential and racing), run by [`model_suite!`].
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    reason = "this crate is a test suite: a failed expectation must fail the test that runs it"
)]

use domain::clock::ManualClock;
use domain::service::Ports;

pub mod accounts;
pub mod audit;
pub mod catalogue;
pub mod commit;
pub mod concurrency;
pub mod fixture;
pub mod idempotency;
pub mod model;
pub mod payments;
pub mod queue;
pub mod reservations;
pub mod rooms;
pub mod settings;

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

/// The queue's cases, the races included: everything a queue store must prove.
#[macro_export]
macro_rules! queue_suite {
    ($harness:ty) => {
        $crate::__suite!(port_queue, $harness;
            queue::issue_gives_one_token_per_user_and_returns_the_live_one,
            queue::issue_gives_a_new_token_once_the_old_one_expired,
            queue::sequence_is_gapless_and_position_counts_waiting_tokens_ahead,
            queue::find_and_find_with_cursor_return_the_stored_token,
            queue::admission_is_fifo_over_several_ticks,
            queue::admission_admits_at_most_the_batch,
            queue::admission_respects_max_active,
            queue::admission_is_not_due_within_the_interval,
            queue::admission_is_timed_on_the_store_clock_not_the_callers,
            queue::paused_admission_admits_nobody_until_resumed,
            queue::expire_tokens_at_the_exact_boundary_and_only_once,
            queue::expire_tokens_works_in_batches_of_the_limit,
            queue::use_up_expires_only_that_active_token,
            queue::a_payment_uses_up_only_the_token_that_paid,
            queue::stats_count_waiting_and_live_active_tokens,
            queue::ping_answers,
            queue::concurrent_issues_for_one_user_yield_one_token,
            queue::concurrent_issues_of_many_users_number_them_gaplessly,
            queue::concurrent_admissions_admit_at_most_one_batch,
            queue::concurrent_expiry_sweeps_change_each_token_once,
            queue::concurrent_payments_with_one_token_pay_once,
            commit::nothing_is_issued_for_a_caller_that_gave_up,
        );
    };
}

/// The waiting room's live settings.
#[macro_export]
macro_rules! settings_suite {
    ($harness:ty) => {
        $crate::__suite!(port_settings, $harness;
            settings::settings_are_the_defaults_until_updated,
            settings::update_returns_before_and_after_and_later_loads_see_it,
            settings::queue_state_reports_the_settings_in_force,
            settings::concurrent_updates_of_different_settings_lose_none,
            audit::a_settings_change_logs_what_it_replaced,
            audit::the_log_pages_newest_first,
        );
    };
}

/// Concerts, schedules, seat maps, the operator's catalogue and the sales report.
#[macro_export]
macro_rules! catalogue_suite {
    ($harness:ty) => {
        $crate::__suite!(port_catalogue, $harness;
            catalogue::concerts_are_listed_by_title,
            catalogue::schedules_are_future_only_ascending_with_counts,
            catalogue::schedule_counts_follow_holds_payments_and_lapses,
            catalogue::seats_are_listed_by_number_with_their_claims,
            catalogue::unknown_concert_and_schedule_are_none,
            catalogue::a_schedule_stops_being_bookable_at_its_exact_start,
            catalogue::create_concert_is_all_or_nothing_and_false_for_an_existing_id,
            catalogue::an_operators_concert_is_stored_as_validated,
            catalogue::add_schedule_adds_or_says_why_not,
            catalogue::sales_match_the_seat_map_and_the_payments,
            audit::a_catalogue_change_logs_what_it_stored,
        );
    };
}

/// Seat holds, the hold limit, lapses and their release.
#[macro_export]
macro_rules! reservation_suite {
    ($harness:ty) => {
        $crate::__suite!(port_reservations, $harness;
            reservations::hold_stores_a_held_reservation,
            reservations::seat_is_taken_while_held_or_sold,
            reservations::no_such_seat_for_wrong_unknown_or_started_schedule,
            reservations::seat_can_be_held_again_at_the_exact_lapse,
            reservations::release_lapsed_changes_each_hold_once,
            reservations::release_lapsed_works_in_batches_of_the_limit,
            reservations::the_hold_limit_counts_live_holds_only,
        );
    };
}

/// Balances, credits and the ledger.
#[macro_export]
macro_rules! account_suite {
    ($harness:ty) => {
        $crate::__suite!(port_accounts, $harness;
            accounts::unknown_user_has_zero_balance_and_empty_ledger,
            accounts::credit_adds_and_records_a_charge,
            accounts::credit_over_the_limit_changes_nothing,
            accounts::ledger_sums_to_the_balance,
            accounts::ledger_pages_newest_first_before_an_entry_of_the_user,
        );
    };
}

/// The payment unit of work.
#[macro_export]
macro_rules! payment_suite {
    ($harness:ty) => {
        $crate::__suite!(port_payments, $harness;
            payments::pay_debits_sells_and_uses_up_the_token,
            payments::pay_unknown_or_foreign_reservation_changes_nothing,
            payments::pay_twice_is_already_paid,
            payments::pay_at_the_exact_lapse_is_hold_expired,
            payments::pay_with_insufficient_balance_changes_nothing,
            payments::decide_reads_the_facts_and_its_refusal_changes_nothing,
            payments::a_token_pays_once,
            payments::the_store_refuses_a_second_payment_with_one_token_whatever_decide_says,
            commit::nothing_is_written_for_a_caller_that_gave_up,
        );
    };
}

/// Keyed (idempotent) charges and payments, and the records' purge.
#[macro_export]
macro_rules! idempotency_suite {
    ($harness:ty) => {
        $crate::__suite!(port_idempotency, $harness;
            idempotency::a_keyed_charge_replays_its_recorded_response,
            idempotency::a_key_reused_for_another_request_is_refused,
            idempotency::a_refused_charge_records_nothing_and_its_retry_runs,
            idempotency::a_keyed_payment_replays_after_its_token_was_used_up,
            idempotency::a_refused_payment_records_nothing_and_its_retry_runs,
            idempotency::records_expire_at_their_time_and_are_purged_in_batches,
            idempotency::concurrent_duplicate_charges_have_one_effect,
            idempotency::concurrent_duplicate_payments_have_one_effect,
        );
    };
}

/// Real threads racing on one seat, one user's holds, one account, one reservation.
#[macro_export]
macro_rules! concurrency_suite {
    ($harness:ty) => {
        $crate::__suite!(port_concurrency, $harness;
            concurrency::one_of_many_concurrent_holds_wins,
            concurrency::concurrent_holds_of_one_user_never_pass_the_hold_limit,
            concurrency::concurrent_charges_lose_no_update,
            concurrency::concurrent_payments_of_one_reservation_debit_once,
            concurrency::a_payment_racing_charges_loses_no_update,
            concurrency::a_payment_racing_the_release_at_the_deadline_has_one_winner,
            concurrency::concurrent_release_sweeps_change_each_hold_once,
        );
    };
}

/// Rooms: their lines, draws, presence, gates and operator changes (needs every port; a
/// queue-only harness fills the others from the in-memory store and its `lines` with its own).
#[macro_export]
macro_rules! rooms_suite {
    ($harness:ty) => {
        $crate::__suite!(port_rooms, $harness;
            rooms::each_room_has_a_line_of_its_own,
            rooms::a_token_opens_only_its_rooms_concerts,
            rooms::joining_follows_the_rooms_state,
            rooms::the_prequeue_is_drawn_once_at_the_opening,
            rooms::abandoned_places_are_skipped_at_their_turn,
            rooms::tokens_say_why_they_expired,
            rooms::rooms_are_created_and_changed_with_their_log_lines,
            rooms::concurrent_room_creations_never_share_a_concert,
            rooms::concurrent_draws_draw_once,
            rooms::joins_during_a_draw_are_kept_behind_the_drawn,
            rooms::rooms_admit_independently,
            rooms::rooms_are_checked_at_once_and_answered_in_room_order,
        );
    };
}

/// Every suite: one `#[test]` per case of every port.
///
/// ```ignore
/// port_tests::conformance_suite!(MyHarness);
/// ```
#[macro_export]
macro_rules! conformance_suite {
    ($harness:ty) => {
        $crate::queue_suite!($harness);
        $crate::settings_suite!($harness);
        $crate::catalogue_suite!($harness);
        $crate::reservation_suite!($harness);
        $crate::account_suite!($harness);
        $crate::payment_suite!($harness);
        $crate::idempotency_suite!($harness);
        $crate::concurrency_suite!($harness);
        $crate::rooms_suite!($harness);
    };
}

/// Implementation detail of the suite macros: a module of `#[test]`s, one per case.
#[doc(hidden)]
#[macro_export]
macro_rules! __suite {
    ($module:ident, $harness:ty; $($group:ident :: $case:ident),* $(,)?) => {
        mod $module {
            #[allow(unused_imports, reason = "brings the harness type into scope; unused when it is a path")]
            use super::*;

            $(
                #[test]
                fn $case() {
                    $crate::$group::$case::<$harness>();
                }
            )*
        }
    };
}

/// The model-based test of the whole service ([`model`]) against a [`model::ModelStore`]: the
/// sequential state-machine test, the concurrent one, and the kept regression sequences, with
/// the case counts given (`PROPTEST_CASES` overrides them). Failing seeds are kept in the
/// adapter's `proptest-regressions/model-sequential.txt` and `model-concurrent.txt`.
///
/// ```ignore
/// port_tests::model_suite!(Memory, sequential = 256, steps = 48, concurrent = 64);
/// ```
#[macro_export]
macro_rules! model_suite {
    ($harness:ty, sequential = $cases:expr, steps = $steps:expr, concurrent = $concurrent:expr $(,)?) => {
        mod model_based {
            #[allow(unused_imports, reason = "brings the harness type into scope; unused when it is a path")]
            use super::*;

            #[test]
            fn sequential() {
                $crate::model::sequential_suite::<$harness>(&$crate::model::Budget {
                    cases: $cases,
                    steps: $steps,
                    threads: 4,
                    steps_per_thread: 3,
                    regressions: Some("proptest-regressions/model-sequential.txt"),
                });
            }

            #[test]
            fn concurrent() {
                $crate::model::concurrent_suite::<$harness>(&$crate::model::Budget {
                    cases: $concurrent,
                    steps: 8,
                    threads: 4,
                    steps_per_thread: 3,
                    regressions: Some("proptest-regressions/model-concurrent.txt"),
                });
            }

            #[test]
            fn kept_sequences() {
                $crate::model::regressions::run_all::<$harness>();
            }
        }
    };
}
