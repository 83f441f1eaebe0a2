//! Black-box tests of the `concert` binary: each starts `concert serve` on a fresh PostgreSQL
//! database (created and dropped by the test) and a free loopback port, and walks the
//! product's sequences over HTTP as a client would.
//!
//! # Layout
//! - Flows on every queue store: each function taking a [`Queue`] runs twice, as
//!   `on_postgres::<name>` and `on_redis::<name>` (`QUEUE_STORE=redis`, a random
//!   `REDIS_KEY_PREFIX` whose keys are deleted after), through [`on_every_queue_store!`]:
//!   purchase, expiry, the waiting line, races, bad inputs, the operator API across two
//!   instances and a restart, clock skew under `faketime`, start-up while the store is down.
//! - Rooms (`rooms`): a pre-queue drawn once by skewed instances, the gate on another room's
//!   concerts, abandoned places skipped and counted.
//! - One-shot commands and `make run`'s fallback (`seed-demo`, `migrate`, `check-invariants`,
//!   `serve --store memory`), at the end.
//!
//! Expiry here uses short real durations (1-2 s) because a black box has no clock to move; the
//! exact boundaries are proven with a manual clock in the domain, conformance and scheduler
//! tests. Every wait is for an observed event with a deadline, never a fixed sleep; where a test
//! asserts that nothing happened (a pause), it waits for the instances' scheduler passes, read
//! from `/metrics`, each of which would have admitted. No assertion is on a duration, except the
//! contract's "503 within 5 s", which is a client timeout on the request.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    reason = "test code: a failed expectation should panic"
)]

#[path = "../support/mod.rs"]
mod support;

use std::collections::HashMap;
use std::sync::Barrier;
use std::time::Duration;

use reqwest::Method;
use serde_json::{json, Value};
use support::private::{PrivatePostgres, PrivateRedis};
use support::{
    free_port, query_i64, read_full, run_command, run_command_within, wait_for, wait_scheduler_passes, Database,
    Deployment, Launch, Queue, Server, ADMIN,
};
use time::format_description::well_known::Rfc3339;
use time::OffsetDateTime;
use uuid::Uuid;

/// Runs each named `fn(Queue)` once per queue store, as `on_postgres::name` and
/// `on_redis::name`.
macro_rules! on_every_queue_store {
    ($($test:ident),* $(,)?) => {
        /// The flows with the waiting queue in PostgreSQL (`QUEUE_STORE=postgres`).
        mod on_postgres {
            $(#[test] fn $test() { super::$test(super::Queue::Postgres) })*
        }
        /// The same flows with the waiting queue in Redis (`QUEUE_STORE=redis`).
        mod on_redis {
            $(#[test] fn $test() { super::$test(super::Queue::Redis) })*
        }
    };
}

/// The buyer's flows with the waiting queue on a Redis Cluster of 3 masters and 3 replicas
/// (`REDIS_URL` the list of its nodes), started by this test binary and shared by these tests:
/// the whole purchase, the races on one seat, one reservation and one token, expiry and a
/// refused WAITING token, and rooms spread over the masters with their draw. A master's
/// failover under load is `adapters-redis`'s `cluster_failover` test, and the cluster behind
/// HAProxy is `tests/cluster`.
mod on_redis_cluster {
    macro_rules! on_the_cluster {
        ($($test:ident),* $(,)?) => {
            $(#[test] fn $test() { super::$test(super::Queue::RedisCluster) })*
        };
    }
    on_the_cluster!(
        a_purchase_walks_the_whole_sequence_and_the_instance_stops_cleanly,
        a_waiting_token_is_refused_and_keeps_its_place,
        an_active_token_expires_after_its_ttl,
        fifty_users_racing_for_one_seat_make_one_reservation,
        twenty_payments_of_one_reservation_debit_once,
        one_token_pays_once_for_concurrent_payments_of_three_seats,
        a_prequeue_is_drawn_once_by_instances_whose_clocks_disagree,
    );
}

on_every_queue_store!(
    a_purchase_walks_the_whole_sequence_and_the_instance_stops_cleanly,
    a_hold_lapses_and_the_seat_is_free_again,
    an_active_token_expires_after_its_ttl,
    a_waiting_token_is_refused_and_keeps_its_place,
    fifty_users_racing_for_one_seat_make_one_reservation,
    twenty_payments_of_one_reservation_debit_once,
    one_token_pays_once_for_concurrent_payments_of_three_seats,
    bad_inputs_get_their_code_change_nothing_and_never_a_500,
    openapi_health_and_metrics_are_served_and_sigint_stops_cleanly,
    every_admin_endpoint_and_error_row_through_the_binary,
    a_pause_holds_on_every_instance_and_across_a_restart,
    a_change_of_n_on_one_instance_is_used_by_the_next_tick_of_another,
    concurrent_operator_changes_through_two_instances_are_never_lost,
    instances_whose_clocks_disagree_admit_at_most_n_per_interval,
    holds_and_tokens_are_timed_on_the_stores_clock_whatever_each_instance_says,
    serve_starts_while_its_store_is_down_and_recovers_without_a_restart,
    a_prequeue_is_drawn_once_by_instances_whose_clocks_disagree,
    a_token_of_one_room_is_refused_for_another_rooms_concert,
    buyers_who_stop_polling_are_skipped_at_their_turn,
);

fn seat_price(seats: &[Value], idx: usize) -> (String, i64) {
    (seats[idx]["id"].as_str().unwrap().to_owned(), seats[idx]["price"].as_i64().unwrap())
}

fn seat_status(s: &Server, token: &str, schedule: &str, seat: &str) -> String {
    let (_, seats) = s.get(&format!("/schedules/{schedule}/seats"), Some(token));
    seats.as_array().unwrap().iter().find(|x| x["id"] == seat).unwrap()["status"].as_str().unwrap().to_owned()
}

fn time_of(v: &Value) -> OffsetDateTime {
    OffsetDateTime::parse(v.as_str().unwrap_or_else(|| panic!("a time, got {v}")), &Rfc3339).unwrap()
}

/// A new user with enough balance buys one seat of `schedule`: hold, pay, seat SOLD.
fn buy_one_seat(s: &Server, schedule: &str, idx: usize) {
    let (user, token) = s.active_user();
    let (_, seats) = s.get(&format!("/schedules/{schedule}/seats"), Some(&token));
    let (seat, price) = seat_price(seats.as_array().unwrap(), idx);
    assert_eq!(s.charge(&user, price), price);
    let (st, r) = s.post("/reservations", Some(&token), json!({ "scheduleId": schedule, "seatId": seat }));
    assert_eq!(st, 201, "{r}");
    let (st, p) = s.post("/payments", Some(&token), json!({ "reservationId": r["id"] }));
    assert_eq!((st, p["balance"].as_i64()), (201, Some(0)), "{p}");
    let (_, again) = s.active_user_for(&user);
    assert_eq!(seat_status(s, &again, schedule, &seat), "SOLD");
}

mod commands;
mod flows;
mod operator;
mod rooms;
mod startup;

use flows::*;
use operator::*;
use rooms::*;
use startup::*;
