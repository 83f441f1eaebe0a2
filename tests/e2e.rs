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

// ---- the buyer's flows ----------------------------------------------------------------------

fn a_purchase_walks_the_whole_sequence_and_the_instance_stops_cleanly(q: Queue) {
    let mut s = Server::start(q, &[("QUEUE_ADMIT_BATCH", "10")]);
    let user = Uuid::new_v4().to_string();

    // charge a little, read it back.
    let (st, b) = s.post(&format!("/users/{user}/balance/charge"), None, json!({ "amount": 1000 }));
    assert_eq!((st, b["balance"].as_i64()), (200, Some(1000)), "{b}");
    assert_eq!(s.balance(&user), 1000);

    // token, poll until ACTIVE.
    let (st, tok) = s.post("/queue/tokens", None, json!({ "userId": user }));
    assert_eq!(st, 201, "{tok}");
    assert_eq!(tok["userId"], user.as_str());
    assert_eq!(tok["paused"], false);
    assert!(["WAITING", "ACTIVE"].contains(&tok["status"].as_str().unwrap()));
    let token = tok["token"].as_str().unwrap().to_owned();
    s.wait_active(&token);
    let (st, polled) = s.get("/queue/token", Some(&token));
    assert_eq!((st, polled["position"].as_i64(), polled["estimatedWaitSecs"].as_i64()), (200, Some(0), Some(0)));
    assert!(time_of(&polled["expiresAt"]) > time_of(&polled["activatedAt"]), "{polled}");

    // concerts, schedules, seats.
    let (schedule, seats) = s.first_schedule(&token);
    assert_eq!(seats.len(), 50);
    assert!(seats.iter().all(|x| x["status"] == "AVAILABLE"));
    let (seat, price) = seat_price(&seats, 20);

    // reserve: HELD for the token's user.
    let (st, r) = s.post("/reservations", Some(&token), json!({ "scheduleId": schedule, "seatId": seat }));
    assert_eq!(st, 201, "{r}");
    assert_eq!(
        (r["status"].as_str(), r["userId"].as_str(), r["price"].as_i64(), r["seatNumber"].as_i64()),
        (Some("HELD"), Some(user.as_str()), Some(price), Some(21))
    );
    let reservation = r["id"].as_str().unwrap().to_owned();
    assert_eq!(seat_status(&s, &token, &schedule, &seat), "HELD");

    // pay with too little: 402, nothing changes.
    let (st, e) = s.post("/payments", Some(&token), json!({ "reservationId": reservation }));
    assert_eq!((st, e["code"].as_str()), (402, Some("INSUFFICIENT_BALANCE")), "{e}");
    assert_eq!(s.balance(&user), 1000);
    let (_, r) = s.get(&format!("/reservations/{reservation}"), Some(&token));
    assert_eq!(r["status"], "HELD");

    // top up, pay again: 201, debited once, seat SOLD, token used up.
    assert_eq!(s.charge(&user, price), 1000 + price);
    let (st, p) = s.post("/payments", Some(&token), json!({ "reservationId": reservation }));
    assert_eq!(st, 201, "{p}");
    assert_eq!((p["amount"].as_i64(), p["balance"].as_i64()), (Some(price), Some(1000)));
    assert_eq!(p["reservationId"], reservation.as_str());
    assert_eq!(s.balance(&user), 1000);

    let (st, polled) = s.get("/queue/token", Some(&token));
    assert_eq!((st, polled["status"].as_str()), (200, Some("EXPIRED")));
    let (st, e) = s.get("/concerts", Some(&token));
    assert_eq!((st, e["code"].as_str()), (401, Some("TOKEN_EXPIRED")));

    // A new place in line shows the seat SOLD and the reservation PAID.
    let (_, token2) = s.active_user_for(&user);
    assert_ne!(token2, token);
    assert_eq!(seat_status(&s, &token2, &schedule, &seat), "SOLD");
    let (_, r) = s.get(&format!("/reservations/{reservation}"), Some(&token2));
    assert_eq!(r["status"], "PAID");

    // The ledger, newest first, paged.
    let history = format!("/users/{user}/balance/history");
    let (st, h) = s.get(&format!("{history}?limit=1"), None);
    assert_eq!(st, 200, "{h}");
    let e = &h["entries"][0];
    assert_eq!(
        (e["kind"].as_str(), e["amount"].as_i64(), e["balanceAfter"].as_i64()),
        (Some("PAYMENT"), Some(-price), Some(1000))
    );
    assert_eq!(e["reservationId"], reservation.as_str());
    let before = h["nextBefore"].as_str().expect("a next page").to_owned();
    let (st, h) = s.get(&format!("{history}?limit=2&before={before}"), None);
    assert_eq!(st, 200, "{h}");
    let rest: Vec<(Option<&str>, Option<i64>)> =
        h["entries"].as_array().unwrap().iter().map(|e| (e["kind"].as_str(), e["amount"].as_i64())).collect();
    assert_eq!(rest, [(Some("CHARGE"), Some(price)), (Some("CHARGE"), Some(1000))]);
    assert_eq!(h["nextBefore"], Value::Null, "the last page");
    s.assert_invariants();

    // SIGTERM: a graceful stop, exit code 0.
    let status = s.stop("TERM");
    assert!(status.success(), "SIGTERM ended concert serve with {status}");
}

fn a_hold_lapses_and_the_seat_is_free_again(q: Queue) {
    let s = Server::start(q, &[("SEAT_HOLD_SECS", "1")]);
    let (user, token) = s.active_user();
    let (schedule, seats) = s.first_schedule(&token);
    let (seat, price) = seat_price(&seats, 0);
    s.charge(&user, price);
    let (st, r) = s.post("/reservations", Some(&token), json!({ "scheduleId": schedule, "seatId": seat }));
    assert_eq!(st, 201, "{r}");
    let reservation = r["id"].as_str().unwrap().to_owned();

    wait_for("the lapsed seat shows AVAILABLE", Duration::from_secs(10), || {
        seat_status(&s, &token, &schedule, &seat) == "AVAILABLE"
    });
    let (st, e) = s.post("/payments", Some(&token), json!({ "reservationId": reservation }));
    assert_eq!((st, e["code"].as_str()), (409, Some("HOLD_EXPIRED")), "{e}");
    assert_eq!(s.balance(&user), price, "a refused payment changes nothing");
    let (_, r) = s.get(&format!("/reservations/{reservation}"), Some(&token));
    assert_eq!(r["status"], "EXPIRED");

    let (_, other) = s.active_user();
    let (st, r2) = s.post("/reservations", Some(&other), json!({ "scheduleId": schedule, "seatId": seat }));
    assert_eq!(st, 201, "the lapsed seat can be reserved again: {r2}");
    s.assert_invariants();
}

fn an_active_token_expires_after_its_ttl(q: Queue) {
    let s = Server::start(q, &[("QUEUE_ACTIVE_TTL_SECS", "1")]);
    let (user, token) = s.active_user();
    wait_for("the token's TTL runs out", Duration::from_secs(10), || s.get("/concerts", Some(&token)).0 == 401);
    let (st, e) = s.get("/concerts", Some(&token));
    assert_eq!((st, e["code"].as_str()), (401, Some("TOKEN_EXPIRED")));
    let (st, polled) = s.get("/queue/token", Some(&token));
    assert_eq!((st, polled["status"].as_str(), polled["position"].as_i64()), (200, Some("EXPIRED"), Some(0)));
    // The user may queue again and gets a new token.
    let (st, again) = s.post("/queue/tokens", None, json!({ "userId": user }));
    assert_eq!(st, 201, "{again}");
    assert_ne!(again["token"].as_str(), Some(token.as_str()));
}

fn a_waiting_token_is_refused_and_keeps_its_place(q: Queue) {
    let s = Server::start(q, &[("SCHEDULER_ENABLED", "false")]);
    let mut tokens = Vec::new();
    for expected_position in 1..=3 {
        let user = Uuid::new_v4().to_string();
        let (st, t) = s.post("/queue/tokens", None, json!({ "userId": user }));
        assert_eq!(st, 201);
        assert_eq!((t["status"].as_str(), t["position"].as_i64()), (Some("WAITING"), Some(expected_position)), "{t}");
        assert_eq!((t["activatedAt"].clone(), t["expiresAt"].clone()), (Value::Null, Value::Null));
        tokens.push((user, t["token"].as_str().unwrap().to_owned()));
    }
    let (user, token) = &tokens[1];
    let (st, e) = s.get("/concerts", Some(token));
    assert_eq!((st, e["code"].as_str()), (403, Some("TOKEN_NOT_ACTIVE")), "{e}");
    let (st, e) = s.post(
        "/reservations",
        Some(token),
        json!({ "scheduleId": Uuid::new_v4().to_string(), "seatId": Uuid::new_v4().to_string() }),
    );
    assert_eq!((st, e["code"].as_str()), (403, Some("TOKEN_NOT_ACTIVE")));
    // One place in line per user: asking again returns the same token, 200.
    let (st, same) = s.post("/queue/tokens", None, json!({ "userId": user }));
    assert_eq!((st, same["token"].as_str(), same["position"].as_i64()), (200, Some(token.as_str()), Some(2)));
    let (st, polled) = s.get("/queue/token", Some(&tokens[2].1));
    assert_eq!((st, polled["position"].as_i64()), (200, Some(3)));
}

fn fifty_users_racing_for_one_seat_make_one_reservation(q: Queue) {
    let s = Server::start(q, &[("QUEUE_ADMIT_BATCH", "100")]);
    // Everyone queues first, so one admission tick lets them all in.
    let users: Vec<(String, String)> = (0..50).map(|_| s.issue_token()).collect();
    for (_, token) in &users {
        s.wait_active(token);
    }
    let (schedule, seats) = s.first_schedule(&users[0].1);
    let (seat, _) = seat_price(&seats, 7);
    let barrier = Barrier::new(users.len());
    let statuses: Vec<u16> = std::thread::scope(|scope| {
        let handles: Vec<_> = users
            .iter()
            .map(|(_, token)| {
                let (s, barrier, schedule, seat) = (&s, &barrier, &schedule, &seat);
                scope.spawn(move || {
                    barrier.wait();
                    s.post("/reservations", Some(token), json!({ "scheduleId": schedule, "seatId": seat })).0
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    assert_eq!(statuses.iter().filter(|&&c| c == 201).count(), 1, "{statuses:?}");
    assert_eq!(statuses.iter().filter(|&&c| c == 409).count(), 49, "{statuses:?}");
    assert_eq!(s.count(&format!("SELECT count(*) AS n FROM reservations WHERE seat_id = '{seat}'")), 1);
    s.assert_invariants();
}

fn twenty_payments_of_one_reservation_debit_once(q: Queue) {
    let s = Server::start(q, &[]);
    let (user, token) = s.active_user();
    let (schedule, seats) = s.first_schedule(&token);
    let (seat, price) = seat_price(&seats, 3);
    s.charge(&user, price * 10);
    let (_, r) = s.post("/reservations", Some(&token), json!({ "scheduleId": schedule, "seatId": seat }));
    let reservation = r["id"].as_str().unwrap().to_owned();
    let barrier = Barrier::new(20);
    let statuses: Vec<(u16, Value)> = std::thread::scope(|scope| {
        let handles: Vec<_> = (0..20)
            .map(|_| {
                let (s, barrier, token, reservation) = (&s, &barrier, &token, &reservation);
                scope.spawn(move || {
                    barrier.wait();
                    s.post("/payments", Some(token), json!({ "reservationId": reservation }))
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    let created = statuses.iter().filter(|(c, _)| *c == 201).count();
    assert_eq!(created, 1, "{statuses:?}");
    // The losers see the reservation paid, or the token already used up by the winner.
    for (code, body) in statuses.iter().filter(|(c, _)| *c != 201) {
        assert!(
            matches!((code, body["code"].as_str()), (409, Some("ALREADY_PAID")) | (401, Some("TOKEN_EXPIRED"))),
            "{code} {body}"
        );
    }
    assert_eq!(s.balance(&user), price * 9, "debited exactly once");
    assert_eq!(s.count("SELECT count(*) AS n FROM payments"), 1);
    s.assert_invariants();
}

/// A token pays once: of concurrent payments with one ACTIVE token for three held seats, each
/// of which would succeed alone, exactly one succeeds; the others get `TOKEN_EXPIRED` and
/// change nothing.
fn one_token_pays_once_for_concurrent_payments_of_three_seats(q: Queue) {
    let s = Server::start(q, &[]);
    let (user, token) = s.active_user();
    let (schedule, seats) = s.first_schedule(&token);
    let mut reservations = Vec::new();
    let mut total = 0;
    for idx in [30, 31, 32] {
        let (seat, price) = seat_price(&seats, idx);
        total += price;
        let (st, r) = s.post("/reservations", Some(&token), json!({ "scheduleId": schedule, "seatId": seat }));
        assert_eq!(st, 201, "{r}");
        reservations.push((r["id"].as_str().unwrap().to_owned(), price));
    }
    s.charge(&user, total);
    let barrier = Barrier::new(reservations.len());
    let answers: Vec<(u16, Value)> = std::thread::scope(|scope| {
        let handles: Vec<_> = reservations
            .iter()
            .map(|(id, _)| {
                let (s, barrier, token) = (&s, &barrier, &token);
                scope.spawn(move || {
                    barrier.wait();
                    s.post("/payments", Some(token), json!({ "reservationId": id }))
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    let paid: Vec<&Value> = answers.iter().filter(|(c, _)| *c == 201).map(|(_, b)| b).collect();
    assert_eq!(paid.len(), 1, "{answers:?}");
    for (code, body) in answers.iter().filter(|(c, _)| *c != 201) {
        assert_eq!((*code, body["code"].as_str()), (401, Some("TOKEN_EXPIRED")), "{body}");
    }
    let price = reservations.iter().find(|(id, _)| paid[0]["reservationId"] == id.as_str()).unwrap().1;
    assert_eq!(s.balance(&user), total - price, "one debit");
    assert_eq!(s.count("SELECT count(*) AS n FROM payments"), 1);
    assert_eq!(s.count("SELECT count(*) AS n FROM reservations WHERE status = 'HELD'"), 2, "the others stay held");
    s.assert_invariants();
}

/// One malformed or refused request and what the contract says it gets.
struct Bad {
    method: &'static str,
    path: String,
    auth: Option<String>,
    content_type: Option<&'static str>,
    headers: Vec<(&'static str, String)>,
    body: Option<String>,
    status: u16,
    code: &'static str,
}

fn get(path: impl Into<String>) -> Bad {
    Bad {
        method: "GET",
        path: path.into(),
        auth: None,
        content_type: None,
        headers: Vec::new(),
        body: None,
        status: 0,
        code: "",
    }
}

/// A request with a JSON content type.
fn with_body(method: &'static str, path: impl Into<String>, body: impl Into<String>) -> Bad {
    Bad { method, content_type: Some("application/json"), body: Some(body.into()), ..get(path) }
}

fn post(path: impl Into<String>, body: impl Into<String>) -> Bad {
    with_body("POST", path, body)
}

impl Bad {
    fn auth(self, header: impl Into<String>) -> Self {
        Self { auth: Some(header.into()), ..self }
    }

    fn content_type(self, ct: &'static str) -> Self {
        Self { content_type: Some(ct), ..self }
    }

    fn header(mut self, name: &'static str, value: impl Into<String>) -> Self {
        self.headers.push((name, value.into()));
        self
    }

    fn expect(self, status: u16, code: &'static str) -> Self {
        Self { status, code, ..self }
    }
}

/// Sends every case; returns one line per contract violation (status, code, content type, a
/// leak of internals, a problem field missing).
fn check_cases(s: &Server, cases: &[Bad]) -> Vec<String> {
    let mut failures = Vec::new();
    for c in cases {
        let mut req = s.http.request(c.method.parse().unwrap(), s.url(&c.path));
        if let Some(a) = &c.auth {
            req = req.header("Authorization", a);
        }
        if let Some(ct) = c.content_type {
            req = req.header("Content-Type", ct);
        }
        for (name, value) in &c.headers {
            req = req.header(*name, value);
        }
        if let Some(b) = &c.body {
            req = req.body(b.clone());
        }
        let (status, headers, body) = read_full(req.send().unwrap());
        let ct = headers.get("content-type").map(|v| v.to_str().unwrap_or("").to_owned()).unwrap_or_default();
        let text = body.to_string().to_lowercase();
        let leaks = ["select ", "diesel", "panicked", "domain::", "sqlstate", "redis"].iter().any(|w| text.contains(w));
        if status != c.status || body["code"] != c.code || !ct.starts_with("application/problem+json") || leaks {
            failures
                .push(format!("{} {} -> {status} {ct} {body} (expected {} {})", c.method, c.path, c.status, c.code));
        }
        for key in ["type", "title", "status", "detail", "code"] {
            if body.get(key).is_none() {
                failures.push(format!("{} {}: problem body lacks `{key}`: {body}", c.method, c.path));
            }
        }
        if status == 401 && !headers.contains_key("www-authenticate") {
            failures.push(format!("{} {}: a 401 without WWW-Authenticate", c.method, c.path));
        }
    }
    failures
}

fn bad_inputs_get_their_code_change_nothing_and_never_a_500(q: Queue) {
    let s = Server::start(q, &[("MAX_HOLDS_PER_USER", "2")]);
    let (user, token) = s.active_user();
    let (schedule, seats) = s.first_schedule(&token);
    let (seat, price) = seat_price(&seats, 0);
    s.charge(&user, 5000);
    let other_schedule_seats = {
        let (_, concerts) = s.get("/concerts", Some(&token));
        let c = concerts[0]["id"].as_str().unwrap().to_owned();
        let (_, schedules) = s.get(&format!("/concerts/{c}/schedules"), Some(&token));
        let other = schedules[1]["id"].as_str().unwrap().to_owned();
        s.get(&format!("/schedules/{other}/seats"), Some(&token)).1
    };
    let foreign_seat = other_schedule_seats[0]["id"].as_str().unwrap().to_owned();
    let (_, r) = s.post("/reservations", Some(&token), json!({ "scheduleId": schedule, "seatId": seat }));
    let reservation = r["id"].as_str().unwrap().to_owned();

    let big = format!("{{\"amount\": 1, \"pad\": \"{}\"}}", "x".repeat(17 * 1024));
    let forged = "ab".repeat(32);
    let b = format!("Bearer {token}");
    let charge = format!("/users/{user}/balance/charge");
    let history = format!("/users/{user}/balance/history");
    let hold = |extra: &str| format!(r#"{{"scheduleId":"{schedule}","seatId":"{seat}"{extra}}}"#);
    let cases = vec![
        post("/queue/tokens", "{").expect(400, "INVALID_REQUEST"),
        post("/queue/tokens", r#"{"userId":"nope"}"#).expect(400, "INVALID_REQUEST"),
        post("/queue/tokens", format!(r#"{{"userId":"{}"}}"#, user.to_uppercase())).expect(400, "INVALID_REQUEST"),
        post("/queue/tokens", "{}").expect(400, "INVALID_REQUEST"),
        post("/queue/tokens", r#"{"userId":42}"#).expect(400, "INVALID_REQUEST"),
        post("/queue/tokens", format!(r#"{{"userId":"{user}"}}"#))
            .content_type("text/plain")
            .expect(400, "INVALID_REQUEST"),
        post("/queue/tokens", big.clone()).expect(413, "PAYLOAD_TOO_LARGE"),
        get("/queue/token").expect(401, "TOKEN_MISSING"),
        get("/queue/token").auth("Basic dXNlcjpwYXNz").expect(401, "TOKEN_MISSING"),
        get("/queue/token").auth("Bearer not-a-token").expect(401, "TOKEN_INVALID"),
        get("/concerts").auth(format!("Bearer {forged}")).expect(401, "TOKEN_INVALID"),
        get("/concerts").expect(401, "TOKEN_MISSING"),
        get("/concerts/not-a-uuid/schedules").auth(&b).expect(400, "INVALID_REQUEST"),
        get(format!("/concerts/{}/schedules", Uuid::new_v4())).auth(&b).expect(404, "NOT_FOUND"),
        get(format!("/schedules/{}/seats", Uuid::new_v4())).auth(&b).expect(404, "NOT_FOUND"),
        get("/schedules/123/seats").auth(&b).expect(400, "INVALID_REQUEST"),
        post("/reservations", hold(r#","price":1"#)).auth(&b).expect(400, "INVALID_REQUEST"),
        post("/reservations", hold(&format!(r#","userId":"{}""#, Uuid::new_v4())))
            .auth(&b)
            .expect(400, "INVALID_REQUEST"),
        post("/reservations", format!(r#"{{"scheduleId":"{schedule}"}}"#)).auth(&b).expect(400, "INVALID_REQUEST"),
        post("/reservations", format!(r#"{{"scheduleId":"{schedule}","seatId":"{foreign_seat}"}}"#))
            .auth(&b)
            .expect(404, "NOT_FOUND"),
        post("/reservations", format!(r#"{{"scheduleId":"{schedule}","seatId":"{}"}}"#, Uuid::new_v4()))
            .auth(&b)
            .expect(404, "NOT_FOUND"),
        post("/reservations", hold("")).auth(&b).expect(409, "SEAT_UNAVAILABLE"),
        get("/reservations/xyz").auth(&b).expect(400, "INVALID_REQUEST"),
        get(format!("/reservations/{}", Uuid::new_v4())).auth(&b).expect(404, "NOT_FOUND"),
        post("/payments", format!(r#"{{"reservationId":"{reservation}","amount":1}}"#))
            .auth(&b)
            .expect(400, "INVALID_REQUEST"),
        post("/payments", format!(r#"{{"reservationId":"{}"}}"#, Uuid::new_v4())).auth(&b).expect(404, "NOT_FOUND"),
        post("/payments", format!(r#"{{"reservationId":"{reservation}"}}"#))
            .auth(&b)
            .expect(402, "INSUFFICIENT_BALANCE"),
        post("/payments", format!(r#"{{"reservationId":"{reservation}"}}"#))
            .auth(&b)
            .header("Idempotency-Key", "x".repeat(256))
            .expect(400, "INVALID_REQUEST"),
        get("/users/not-a-uuid/balance").expect(400, "INVALID_REQUEST"),
        get(format!("{history}?limit=0")).expect(400, "INVALID_REQUEST"),
        get(format!("{history}?limit=101")).expect(400, "INVALID_REQUEST"),
        get(format!("{history}?limit=ten")).expect(400, "INVALID_REQUEST"),
        get(format!("{history}?before={}", Uuid::new_v4())).expect(400, "INVALID_REQUEST"),
        post(&charge, r#"{"amount":0}"#).expect(400, "INVALID_AMOUNT"),
        post(&charge, r#"{"amount":-5}"#).expect(400, "INVALID_AMOUNT"),
        post(&charge, r#"{"amount":1.5}"#).expect(400, "INVALID_AMOUNT"),
        post(&charge, r#"{"amount":"100"}"#).expect(400, "INVALID_AMOUNT"),
        post(&charge, r#"{"amount":1000000001}"#).expect(400, "INVALID_AMOUNT"),
        post(&charge, r#"{"amount":99999999999999999999999}"#).expect(400, "INVALID_AMOUNT"),
        post(&charge, "[1,2").expect(400, "INVALID_REQUEST"),
        post(&charge, r#"{"amount":1}"#).header("Idempotency-Key", "tab\there").expect(400, "INVALID_REQUEST"),
        post(&charge, big).expect(413, "PAYLOAD_TOO_LARGE"),
        get("/no/such/path").expect(404, "NOT_FOUND"),
    ];
    let failures = check_cases(&s, &cases);
    assert!(failures.is_empty(), "contract violations:\n{}", failures.join("\n"));

    // Nothing changed: one reservation (HELD), the balance as charged, no payment.
    assert_eq!(s.balance(&user), 5000);
    assert!(price > 5000, "the demo's cheapest seat must cost more than the test balance");
    let (_, r) = s.get(&format!("/reservations/{reservation}"), Some(&token));
    assert_eq!(r["status"], "HELD");
    assert_eq!(s.count("SELECT count(*) AS n FROM reservations"), 1);
    assert_eq!(s.count("SELECT count(*) AS n FROM payments"), 0);

    // HOLD_LIMIT: a second hold is the last one allowed (MAX_HOLDS_PER_USER=2).
    let (seat2, _) = seat_price(&seats, 1);
    let (st, r2) = s.post("/reservations", Some(&token), json!({ "scheduleId": schedule, "seatId": seat2 }));
    assert_eq!(st, 201, "{r2}");
    let (seat3, _) = seat_price(&seats, 2);
    let (st, e) = s.post("/reservations", Some(&token), json!({ "scheduleId": schedule, "seatId": seat3 }));
    assert_eq!((st, e["code"].as_str()), (409, Some("HOLD_LIMIT")), "{e}");
    assert_eq!(s.count("SELECT count(*) AS n FROM reservations"), 2);

    // Idempotency-Key: a replay answers the recorded outcome and changes nothing; the same key
    // for another request is 422 and changes nothing.
    let keyed = |amount: i64| {
        let req = s.http.post(s.url(&charge)).header("Idempotency-Key", "top-up-1").json(&json!({ "amount": amount }));
        read_full(req.send().unwrap())
    };
    let (st, h1, first) = keyed(700);
    assert_eq!((st, first["balance"].as_i64()), (200, Some(5700)), "{first}");
    assert!(h1.get("idempotent-replayed").is_none());
    let (st, h2, replay) = keyed(700);
    assert_eq!((st, &replay), (200, &first));
    assert_eq!(h2.get("idempotent-replayed").map(|v| v.to_str().unwrap()), Some("true"));
    let (st, _, e) = keyed(800);
    assert_eq!((st, e["code"].as_str()), (422, Some("IDEMPOTENCY_KEY_REUSED")), "{e}");
    assert_eq!(s.balance(&user), 5700);

    // BALANCE_LIMIT: 10 x 1e9 reaches the limit exactly; one won more is refused.
    let rich = Uuid::new_v4().to_string();
    for _ in 0..10 {
        s.charge(&rich, 1_000_000_000);
    }
    let (st, e) = s.post(&format!("/users/{rich}/balance/charge"), None, json!({ "amount": 1 }));
    assert_eq!((st, e["code"].as_str()), (409, Some("BALANCE_LIMIT")), "{e}");
    assert_eq!(s.balance(&rich), 10_000_000_000);
    s.assert_invariants();
}

fn openapi_health_and_metrics_are_served_and_sigint_stops_cleanly(q: Queue) {
    let mut s = Server::start(q, &[]);
    let (st, doc) = s.get("/openapi.json", None);
    assert_eq!(st, 200);
    assert!(doc["openapi"].as_str().unwrap_or("").starts_with('3'), "{doc}");
    let paths: HashMap<String, Value> = serde_json::from_value(doc["paths"].clone()).unwrap();
    for p in [
        "/queue/tokens",
        "/queue/token",
        "/concerts",
        "/concerts/{concertId}/schedules",
        "/schedules/{scheduleId}/seats",
        "/reservations",
        "/reservations/{reservationId}",
        "/payments",
        "/users/{userId}/balance",
        "/users/{userId}/balance/charge",
        "/users/{userId}/balance/history",
        "/health/live",
        "/health/ready",
        "/admin/queue",
        "/admin/concerts",
        "/admin/concerts/{concertId}/schedules",
        "/admin/concerts/{concertId}/sales",
    ] {
        assert!(paths.contains_key(p), "openapi lacks {p}: {:?}", paths.keys());
    }
    assert_eq!(s.get("/health/live", None).0, 200);
    assert_eq!(s.get("/health/ready", None).0, 200);
    let page = s.http.get(s.url("/")).send().unwrap();
    assert_eq!(page.status().as_u16(), 200);
    assert!(page.headers()["content-type"].to_str().unwrap().starts_with("text/html"));

    // Without ADMIN_TOKEN the metrics are open; routes are labelled by template.
    let (_, token) = s.active_user();
    s.first_schedule(&token);
    let text = s.metrics();
    assert!(
        text.contains(r#"http_requests_total{method="GET",route="/schedules/{scheduleId}/seats",status="200"} 1"#),
        "{text}"
    );
    assert!(support::metric_in(&text, "queue_tokens_issued_total") >= 1.0, "{text}");
    assert!(support::metric_in(&text, "queue_tokens_admitted_total") >= 1.0, "{text}");

    // SIGINT (Ctrl-C): a graceful stop, exit code 0.
    let status = s.stop("INT");
    assert!(status.success(), "SIGINT ended concert serve with {status}");
}

// ---- the operator API across instances (issue 13) -------------------------------------------

fn every_admin_endpoint_and_error_row_through_the_binary(q: Queue) {
    let d = Deployment::new(q, &[]);
    let mut both = d.spawn_many(&[&[("ADMIN_TOKEN", ADMIN)], &[]]);
    let (a, off) = (both.remove(0), both.remove(0));
    let (_, queue_token) = a.active_user();
    let concert_path = format!("/admin/concerts/{}/schedules", Uuid::new_v4());
    let sales_path = format!("/admin/concerts/{}/sales", Uuid::new_v4());
    let future = |days: i64| (OffsetDateTime::now_utc() + time::Duration::days(days)).format(&Rfc3339).unwrap();
    let one_seat = json!({"startsAt": future(3), "seats": [{"number": 1, "price": 1000}]}).to_string();
    let endpoints: Vec<(&'static str, String, Option<String>)> = vec![
        ("GET", "/admin/queue".to_owned(), None),
        ("PATCH", "/admin/queue".to_owned(), Some(r#"{"paused":true}"#.to_owned())),
        ("POST", "/admin/concerts".to_owned(), Some(r#"{"title":"Nope","schedules":[]}"#.to_owned())),
        ("POST", concert_path.clone(), Some(one_seat.clone())),
        ("GET", sales_path.clone(), None),
    ];

    // Off when ADMIN_TOKEN is unset: 404 on every path, even with the bearer; metrics open.
    let mut cases = Vec::new();
    for &(method, ref path, ref body) in &endpoints {
        let case = match body {
            Some(b) => with_body(method, path.clone(), b.clone()),
            None => Bad { method, ..get(path.clone()) },
        };
        cases.push(case.auth(format!("Bearer {ADMIN}")).expect(404, "NOT_FOUND"));
    }
    let failures = check_cases(&off, &cases);
    assert!(failures.is_empty(), "with ADMIN_TOKEN unset:\n{}", failures.join("\n"));
    assert_eq!(off.http.get(off.url("/metrics")).send().unwrap().status().as_u16(), 200);

    // On: no bearer, another scheme, a wrong bearer, a queue token: 401, on every endpoint and
    // on /metrics.
    let mut cases = Vec::new();
    let mut guarded = endpoints.clone();
    guarded.push(("GET", "/metrics".to_owned(), None));
    for &(method, ref path, ref body) in &guarded {
        let case = || match body {
            Some(b) => with_body(method, path.clone(), b.clone()),
            None => Bad { method, ..get(path.clone()) },
        };
        cases.push(case().expect(401, "TOKEN_MISSING"));
        cases.push(case().auth(format!("Basic {ADMIN}")).expect(401, "TOKEN_MISSING"));
        cases.push(case().auth(format!("Bearer {ADMIN}x")).expect(401, "TOKEN_INVALID"));
        cases.push(case().auth(format!("Bearer {queue_token}")).expect(401, "TOKEN_INVALID"));
    }
    let failures = check_cases(&a, &cases);
    assert!(failures.is_empty(), "the operator bearer:\n{}", failures.join("\n"));
    assert_eq!(a.queue_state()["paused"], false, "a refused PATCH changed nothing");

    // Invalid bodies: 400, nothing stored.
    let counts = || ["concerts", "schedules", "seats"].map(|t| a.count(&format!("SELECT count(*) AS n FROM {t}")));
    let (before_counts, before_queue) = (counts(), a.queue_state());
    let admin_auth = format!("Bearer {ADMIN}");
    let mut cases: Vec<Bad> = [
        "{}",
        r#"{"admitBatch":0}"#,
        r#"{"admitBatch":100001}"#,
        r#"{"admitIntervalSecs":0}"#,
        r#"{"admitIntervalSecs":86401}"#,
        r#"{"activeTtlSecs":9}"#,
        r#"{"maxActive":0}"#,
        r#"{"paused":"yes"}"#,
        r#"{"admitBatch":1.5}"#,
        r#"{"paused":true,"color":"red"}"#,
        "[true]",
        "{",
    ]
    .iter()
    .map(|b| with_body("PATCH", "/admin/queue", *b).auth(&admin_auth).expect(400, "INVALID_REQUEST"))
    .collect();
    let past = (OffsetDateTime::now_utc() - time::Duration::days(1)).format(&Rfc3339).unwrap();
    let sched = |seats: Value| json!({"startsAt": future(2), "seats": seats});
    let bad_concerts = [
        json!({"title": "", "schedules": []}),
        json!({"title": "x".repeat(201)}),
        json!({"schedules": []}),
        json!({"title": "Extra", "genre": "rock"}),
        json!({"title": "Past", "schedules": [{"startsAt": past, "seats": [{"number": 1, "price": 1}]}]}),
        json!({"title": "Twice", "schedules": [sched(json!([{"number": 1, "price": 1}, {"number": 1, "price": 2}]))]}),
        json!({"title": "Free", "schedules": [sched(json!([{"number": 1, "price": 0}]))]}),
        json!({"title": "Dear", "schedules": [sched(json!([{"number": 1, "price": 100_000_001}]))]}),
        json!({"title": "Zero", "schedules": [sched(json!([{"number": 0, "price": 1}]))]}),
        json!({"title": "Empty", "schedules": [sched(json!([]))]}),
        json!({"title": "When", "schedules": [{"startsAt": "tomorrow", "seats": [{"number": 1, "price": 1}]}]}),
        json!({"title": "Many", "schedules": vec![sched(json!([{"number": 1, "price": 1}])); 21]}),
        json!({"title": "Huge", "schedules": [sched(Value::Array((1..=5001).map(|n| json!({"number": n, "price": 1})).collect()))]}),
        // The last schedule is invalid: all or nothing, the first is not stored either.
        json!({"title": "Half", "schedules": [sched(json!([{"number": 1, "price": 1}])), sched(json!([]))]}),
    ];
    for body in &bad_concerts {
        cases.push(post("/admin/concerts", body.to_string()).auth(&admin_auth).expect(400, "INVALID_REQUEST"));
    }
    cases.push(
        post("/admin/concerts/NOPE/schedules", one_seat.clone()).auth(&admin_auth).expect(400, "INVALID_REQUEST"),
    );
    cases.push(post(&concert_path, one_seat.clone()).auth(&admin_auth).expect(404, "NOT_FOUND"));
    cases.push(get(&sales_path).auth(&admin_auth).expect(404, "NOT_FOUND"));
    cases.push(get("/admin/concerts/NOPE/sales").auth(&admin_auth).expect(400, "INVALID_REQUEST"));
    cases.push(
        post("/admin/concerts", "x".repeat(4 * 1024 * 1024 + 1)).auth(&admin_auth).expect(413, "PAYLOAD_TOO_LARGE"),
    );
    cases.push(Bad { method: "DELETE", ..get("/admin/queue") }.auth(&admin_auth).expect(405, "METHOD_NOT_ALLOWED"));
    let failures = check_cases(&a, &cases);
    assert!(failures.is_empty(), "invalid operator requests:\n{}", failures.join("\n"));
    assert_eq!(counts(), before_counts, "nothing stored on 400");
    let after_queue = a.queue_state();
    for key in ["paused", "admitBatch", "admitIntervalSecs", "activeTtlSecs", "maxActive"] {
        assert_eq!(after_queue[key], before_queue[key], "{key} changed by a refused PATCH");
    }

    // A concert created through the API, with a seat map over the public 16 KiB limit.
    let big_map: Vec<Value> = (1..=3000).map(|n| json!({"number": n, "price": 1000 + n})).collect();
    let body = json!({
        "title": "Midsummer Night", "artist": "The Band", "venue": "Hall",
        "schedules": [
            {"startsAt": future(10), "seats": [{"number": 1, "price": 7000}, {"number": 2, "price": 5000}, {"number": 3, "price": 5000}]},
            {"startsAt": future(5), "seats": big_map},
        ]
    });
    assert!(body.to_string().len() > 16 * 1024);
    let (st, created) = a.send(a.admin(Method::POST, "/admin/concerts").json(&body));
    assert_eq!(st, 201, "{created}");
    let concert = created["id"].as_str().unwrap().to_owned();
    assert_eq!(created["title"], "Midsummer Night");
    let totals: Vec<i64> =
        created["schedules"].as_array().unwrap().iter().map(|s| s["totalSeats"].as_i64().unwrap()).collect();
    assert_eq!(totals.iter().sum::<i64>(), 3003, "{created}");
    assert!(created["schedules"].as_array().unwrap().iter().all(|s| s["concertId"] == concert.as_str()));
    let (st, added) = a.send(
        a.admin(Method::POST, &format!("/admin/concerts/{concert}/schedules"))
            .json(&json!({"startsAt": future(20), "seats": [{"number": 1, "price": 9000}]})),
    );
    assert_eq!((st, added["totalSeats"].as_i64()), (201, Some(1)), "{added}");
    assert_eq!(added["concertId"], concert.as_str());

    // Bookable: a buyer sees it, its schedules ascending, and buys seat 1 of the 3-seat one.
    let (buyer, token) = a.active_user();
    let (_, concerts) = a.get("/concerts", Some(&token));
    assert!(concerts.as_array().unwrap().iter().any(|c| c["id"] == concert.as_str()), "{concerts}");
    let (st, schedules) = a.get(&format!("/concerts/{concert}/schedules"), Some(&token));
    assert_eq!(st, 200);
    let starts: Vec<OffsetDateTime> = schedules.as_array().unwrap().iter().map(|s| time_of(&s["startsAt"])).collect();
    assert_eq!(starts.len(), 3);
    assert!(starts.windows(2).all(|w| w[0] < w[1]), "ascending by start: {schedules}");
    let small =
        schedules.as_array().unwrap().iter().find(|s| s["totalSeats"] == 3).unwrap()["id"].as_str().unwrap().to_owned();
    let (_, seats) = a.get(&format!("/schedules/{small}/seats"), Some(&token));
    let (seat1, price1) = seat_price(seats.as_array().unwrap(), 0);
    assert_eq!(price1, 7000);
    a.charge(&buyer, 7000);
    let (st, r) = a.post("/reservations", Some(&token), json!({"scheduleId": small, "seatId": seat1}));
    assert_eq!(st, 201, "{r}");
    let (st, p) = a.post("/payments", Some(&token), json!({"reservationId": r["id"]}));
    assert_eq!(st, 201, "{p}");
    // ...and another buyer holds seat 2.
    let (_, token2) = a.active_user();
    let (seat2, _) = seat_price(seats.as_array().unwrap(), 1);
    let (st, r) = a.post("/reservations", Some(&token2), json!({"scheduleId": small, "seatId": seat2}));
    assert_eq!(st, 201, "{r}");

    // The sales report counts them.
    let (st, sales) = a.send(a.admin(Method::GET, &format!("/admin/concerts/{concert}/sales")));
    assert_eq!(st, 200, "{sales}");
    let rows = sales.as_array().unwrap();
    assert_eq!(rows.len(), 3, "{sales}");
    let row = rows.iter().find(|r| r["scheduleId"] == small.as_str()).unwrap();
    let got = ["totalSeats", "sold", "held", "available", "revenue"].map(|k| row[k].as_i64().unwrap());
    assert_eq!(got, [3, 1, 1, 1, 7000], "{row}");
    for other in rows.iter().filter(|r| r["scheduleId"] != small.as_str()) {
        assert_eq!((other["sold"].as_i64(), other["revenue"].as_i64()), (Some(0), Some(0)), "{other}");
    }

    // /metrics (with the bearer) after this known traffic.
    let text = a.metrics();
    assert_eq!(support::metric_in(&text, "payments_total"), 1.0, "{text}");
    assert_eq!(support::metric_in(&text, "reservations_held_total"), 2.0, "{text}");
    assert_eq!(support::metric_in(&text, "queue_tokens_issued_total"), 3.0, "{text}");
    assert_eq!(support::metric_in(&text, r#"http_requests_total{method="POST",route="/payments",status="201"}"#), 1.0);
    assert_eq!(
        support::metric_in(
            &text,
            r#"http_requests_total{method="GET",route="/admin/concerts/{concertId}/sales",status="200"}"#
        ),
        1.0,
        "{text}"
    );
    assert!(!text.contains(&concert), "a raw path in a route label:\n{text}");
    d.assert_invariants();
}

fn a_pause_holds_on_every_instance_and_across_a_restart(q: Queue) {
    let d = Deployment::new(q, &[("ADMIN_TOKEN", ADMIN)]);
    let mut pair = d.spawn_many(&[&[], &[]]);
    // Admission runs before the pause.
    let (_, early) = pair[0].active_user();

    let state = pair[1].patch_queue(json!({"paused": true}));
    assert_eq!((state["paused"].clone(), state["nextAdmissionAt"].clone()), (json!(true), Value::Null), "{state}");
    // Every instance applies it at its next check: its state and its token bodies say so.
    for s in &pair {
        wait_for("the pause reaches every instance", Duration::from_secs(10), || {
            s.get("/queue/token", Some(&early)).1["paused"] == true
        });
        assert_eq!(s.queue_state()["paused"], true);
    }
    let mut waiting = Vec::new();
    for s in &pair {
        let user = Uuid::new_v4().to_string();
        let (st, t) = s.post("/queue/tokens", None, json!({ "userId": user }));
        assert_eq!((st, t["status"].as_str(), t["paused"].as_bool()), (201, Some("WAITING"), Some(true)), "{t}");
        waiting.push(t["token"].as_str().unwrap().to_owned());
    }
    let still_waiting = |pair: &[Server]| {
        // Each instance's scheduler checks many times (over a second: past the admission
        // interval), and each check would have admitted the waiting tokens.
        wait_scheduler_passes(&pair.iter().collect::<Vec<_>>(), 15.0);
        for s in pair {
            for (i, t) in waiting.iter().enumerate() {
                let (st, body) = s.get("/queue/token", Some(t));
                assert_eq!(
                    (st, body["status"].as_str(), body["position"].as_i64(), body["paused"].as_bool()),
                    (200, Some("WAITING"), Some(i as i64 + 1), Some(true)),
                    "{body}"
                );
            }
            let q = s.queue_state();
            assert_eq!(
                (q["waiting"].as_i64(), q["admittedThrough"].as_i64(), q["paused"].as_bool()),
                (Some(2), Some(1), Some(true)),
                "{q}"
            );
            assert_eq!(q["nextAdmissionAt"], Value::Null);
        }
    };
    still_waiting(&pair);

    // Both instances restart, with starting values that say "not paused": the stored pause wins.
    for s in &mut pair {
        assert!(s.stop("TERM").success());
    }
    drop(pair);
    let pair = d.spawn_many(&[&[], &[]]);
    for s in &pair {
        assert_eq!(s.queue_state()["paused"], true, "the pause survives a restart");
    }
    still_waiting(&pair);

    // Resumed on the other instance: both waiting tokens are admitted, in order.
    let state = pair[0].patch_queue(json!({"paused": false}));
    assert_eq!(state["paused"], false);
    assert!(state["nextAdmissionAt"].is_string(), "{state}");
    for t in &waiting {
        pair[1].wait_active(t);
    }
    let polled = pair[1].get("/queue/token", Some(&waiting[0])).1;
    assert_eq!(polled["paused"], false, "{polled}");
    d.assert_invariants();
}

fn a_change_of_n_on_one_instance_is_used_by_the_next_tick_of_another(q: Queue) {
    // N=1 from the configuration; only the second instance runs a scheduler.
    let d = Deployment::new(q, &[("ADMIN_TOKEN", ADMIN), ("QUEUE_ADMIT_BATCH", "1")]);
    let mut pair = d.spawn_many(&[&[("SCHEDULER_ENABLED", "false")], &[]]);
    let (api, scheduler) = (pair.remove(0), pair.remove(0));
    api.patch_queue(json!({"paused": true}));
    wait_for("the scheduling instance sees the pause", Duration::from_secs(10), || {
        scheduler.queue_state()["paused"] == true
    });
    let tokens: Vec<String> = (0..10).map(|_| api.issue_token().1).collect();
    wait_scheduler_passes(&[&scheduler], 15.0);
    assert_eq!(scheduler.queue_state()["admittedThrough"], 0, "nobody admitted while paused");

    // One change on the API-only instance: resume with N=4 and a new TTL.
    let state = api.patch_queue(json!({"paused": false, "admitBatch": 4, "activeTtlSecs": 900}));
    assert_eq!((state["admitBatch"].as_i64(), state["activeTtlSecs"].as_i64()), (Some(4), Some(900)), "{state}");
    for t in &tokens {
        scheduler.wait_active(t);
    }
    // Each admission tick stamps its tokens with one activation time: the tick sizes, in line
    // order, show the other instance used N=4 from its first tick on (N=1 would give ten ticks).
    let polled: Vec<Value> = tokens.iter().map(|t| api.get("/queue/token", Some(t)).1).collect();
    let mut ticks: Vec<(OffsetDateTime, usize)> = Vec::new();
    for p in &polled {
        let at = time_of(&p["activatedAt"]);
        match ticks.last_mut() {
            Some((last, n)) if *last == at => *n += 1,
            _ => ticks.push((at, 1)),
        }
        assert_eq!(time_of(&p["expiresAt"]) - at, time::Duration::seconds(900), "the new TTL: {p}");
    }
    assert_eq!(ticks.iter().map(|t| t.1).collect::<Vec<_>>(), [4, 4, 2], "{polled:?}");
    assert!(ticks.windows(2).all(|w| w[0].0 < w[1].0), "in line order: {ticks:?}");
    assert_eq!(scheduler.queue_state()["admitBatch"], 4);
}

/// Issue 21's second report, from outside: four concurrent `PATCH /admin/queue`, each naming
/// another field, through two instances while sixteen clients issue tokens, twelve times.
/// Every change answered 200 is in force on both instances from their next scheduler check,
/// and the operator log's "before" of each change is a value the store really held: the
/// round's four lines chain from the settings before the round to the settings after it.
fn concurrent_operator_changes_through_two_instances_are_never_lost(q: Queue) {
    const ROUNDS: i64 = 12;
    let d = Deployment::new(q, &[("ADMIN_TOKEN", ADMIN), ("SCHEDULER_CHECK_MILLIS", "200")]);
    let pair = d.spawn_many(&[&[], &[]]);
    // A state as the operator log writes it.
    let logged = |v: &Value| {
        let cap = v["maxActive"].as_i64().map_or_else(|| "none".to_owned(), |c| c.to_string());
        format!(
            "paused={} batch={} interval={}s ttl={}s max_active={cap}",
            v["paused"], v["admitBatch"], v["admitIntervalSecs"], v["activeTtlSecs"]
        )
    };
    let mut states = vec![logged(&pair[0].queue_state())];
    let mut starts = Vec::new();
    let stop = std::sync::atomic::AtomicBool::new(false);
    std::thread::scope(|scope| {
        for i in 0..16 {
            let (s, stop) = (&pair[i % 2], &stop);
            scope.spawn(move || {
                while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                    let user = Uuid::new_v4().to_string();
                    let (st, body) = s.post("/queue/tokens", None, json!({ "userId": user }));
                    assert_eq!(st, 201, "{body}");
                }
            });
        }
        for round in 0..ROUNDS {
            let bodies = [
                json!({ "paused": round % 2 == 0 }),
                json!({ "admitBatch": 10 + round }),
                json!({ "admitIntervalSecs": 100 + round }),
                json!({ "activeTtlSecs": 1_000 + round }),
            ];
            starts.push(OffsetDateTime::now_utc());
            std::thread::scope(|inner| {
                for (i, body) in bodies.iter().enumerate() {
                    let s = &pair[i % 2];
                    inner.spawn(move || s.patch_queue(body.clone()));
                }
            });
            std::thread::sleep(Duration::from_millis(450));
            for s in &pair {
                let state = s.queue_state();
                for body in &bodies {
                    for (field, value) in body.as_object().unwrap() {
                        assert_eq!(&state[field], value, "round {round}: {field} lost on {}: {state}", s.base);
                    }
                }
            }
            states.push(logged(&pair[1].queue_state()));
        }
        stop.store(true, std::sync::atomic::Ordering::Relaxed);
    });
    // The operator log, line by line: (when, before, after).
    let mut links: Vec<(OffsetDateTime, String, String)> = Vec::new();
    for s in &pair {
        for line in s.log_tail(100_000).lines().filter(|l| l.contains("queue.update")) {
            let at = OffsetDateTime::parse(line.split(' ').next().unwrap(), &Rfc3339).unwrap();
            let (b, a) = (line.find("before=").unwrap() + "before=".len(), line.find(" after=").unwrap());
            links.push((at, line[b..a].to_owned(), line[a + " after=".len()..].trim_end().to_owned()));
        }
    }
    assert_eq!(links.len(), 4 * usize::try_from(ROUNDS).unwrap(), "one log line per change");
    for (round, start) in starts.iter().enumerate() {
        let end = starts.get(round + 1).copied().unwrap_or(OffsetDateTime::now_utc());
        let mut left: Vec<_> = links.iter().filter(|(at, _, _)| at >= start && *at < end).collect();
        assert_eq!(left.len(), 4, "round {round}: {left:#?}");
        let mut at = states[round].clone();
        while !left.is_empty() {
            // A change that replaced nothing (paused as it was) may come anywhere.
            let next = left.iter().position(|(_, before, after)| *before == at && after != before);
            let next = next.or_else(|| left.iter().position(|(_, before, after)| before == after && *before == at));
            let Some(next) = next else { panic!("round {round}: no change replaced {at}: {left:#?}") };
            at = left.remove(next).2.clone();
        }
        assert_eq!(at, states[round + 1], "round {round}: the chain ends at the settings read after it");
    }
}

/// Asserts that the wall clock of `s` (its HTTP `Date`) is about `secs` ahead of this
/// process's (behind when negative): the `faketime` wrapper works.
fn assert_wall_clock_ahead(s: &Server, secs: i64) {
    let date = s.http.get(s.url("/health/live")).send().unwrap().headers()["date"].to_str().unwrap().to_owned();
    let format = time::macros::format_description!(
        "[weekday repr:short], [day] [month repr:short] [year] [hour]:[minute]:[second] GMT"
    );
    let their_now = time::PrimitiveDateTime::parse(&date, format).unwrap().assume_utc();
    let ahead = their_now - OffsetDateTime::now_utc();
    assert!(
        (ahead - time::Duration::seconds(secs)).abs() < time::Duration::seconds(10),
        "faketime had no effect: {date}"
    );
}

/// Issue 21's first report, from outside: two instances on one store, one under `faketime`
/// 30 s ahead and one 30 s behind, each running its scheduler. Every time they write or compare
/// is the store's: a hold taken through the slow one ends when its `heldUntil` says on the
/// store's clock (the fast one's scheduler neither releases it early nor refuses its payment
/// as lapsed), and a token expires at its TTL on the store's clock on either instance. The
/// test's own clock is the store's (one machine).
fn holds_and_tokens_are_timed_on_the_stores_clock_whatever_each_instance_says(q: Queue) {
    const HOLD: i64 = 6;
    const TTL: i64 = 12;
    let check = time::Duration::milliseconds(200);
    // What the test's polling adds to a scheduler check: its own round trips on a loaded box.
    let slack = time::Duration::milliseconds(800);
    let d = Deployment::new(
        q,
        &[
            ("SEAT_HOLD_SECS", "6"),
            ("QUEUE_ACTIVE_TTL_SECS", "12"),
            ("QUEUE_ADMIT_INTERVAL_SECS", "1"),
            ("SCHEDULER_CHECK_MILLIS", "200"),
        ],
    );
    let (fast, slow) = std::thread::scope(|scope| {
        let fast = scope.spawn(|| d.launch(Launch::new().faketime("+30s")));
        let slow = d.launch(Launch::new().faketime("-30s"));
        (fast.join().unwrap_or_else(|e| std::panic::resume_unwind(e)), slow)
    });
    assert_wall_clock_ahead(&fast, 30);
    assert_wall_clock_ahead(&slow, -30);

    // Two buyers admitted; each holds a seat through the slow instance.
    let (payer, payer_token) = slow.active_user();
    let (_, idle_token) = fast.active_user();
    let admitted = time_of(&slow.get("/queue/token", Some(&idle_token)).1["activatedAt"]);
    let (schedule, seats) = slow.first_schedule(&payer_token);
    let hold = |token: &str, idx: usize| {
        let before = OffsetDateTime::now_utc();
        let (st, r) =
            slow.post("/reservations", Some(token), json!({ "scheduleId": schedule, "seatId": seats[idx]["id"] }));
        assert_eq!(st, 201, "{r}");
        let until = time_of(&r["heldUntil"]);
        let after = OffsetDateTime::now_utc();
        let expected = time::Duration::seconds(HOLD);
        assert!(
            until >= before + expected - slack && until <= after + expected + slack,
            "heldUntil {until} is not {HOLD} s after the store's now ({before}..{after})"
        );
        (r["id"].as_str().unwrap().to_owned(), until)
    };
    let (paid, _) = hold(&payer_token, 0);
    let (idle, idle_until) = hold(&idle_token, 1);
    slow.charge(&payer, seats[0]["price"].as_i64().unwrap());

    // Paid through the fast instance with a second of the hold left: the hold is live.
    let pay_at = idle_until - time::Duration::seconds(2);
    std::thread::sleep((pay_at - OffsetDateTime::now_utc()).try_into().unwrap_or_default());
    let (st, p) = fast.post("/payments", Some(&payer_token), json!({ "reservationId": paid }));
    assert_eq!(st, 201, "a payment 2 s before the hold's end: {p}");

    // The idle hold: HELD in the store and on both seat maps until its end, released within a
    // scheduler check after it.
    let status = |id: &str| {
        let sql = format!("SELECT CASE status WHEN 'HELD' THEN 1 WHEN 'EXPIRED' THEN 2 ELSE 3 END::bigint AS n FROM reservations WHERE id = '{id}'");
        slow.count(&sql)
    };
    let seat_id = seats[1]["id"].as_str().unwrap();
    let released = loop {
        let now = OffsetDateTime::now_utc();
        let st = status(&idle);
        if st != 1 {
            assert_eq!(st, 2, "the idle hold lapsed, not paid");
            break now;
        }
        if now < idle_until - slack {
            for s in [&fast, &slow] {
                assert_eq!(
                    seat_status(s, &idle_token, &schedule, seat_id),
                    "HELD",
                    "at {now}, the hold ends at {idle_until}"
                );
            }
        }
        assert!(now < idle_until + check + slack * 2, "the hold ending at {idle_until} was still HELD at {now}");
        std::thread::sleep(Duration::from_millis(50));
    };
    assert!(released >= idle_until, "released at {released}, before the hold's end at {idle_until}");
    for s in [&fast, &slow] {
        assert_eq!(seat_status(s, &idle_token, &schedule, seat_id), "AVAILABLE");
    }

    // The idle buyer's token: valid on both instances until its TTL on the store's clock.
    let expires = admitted + time::Duration::seconds(TTL);
    assert!(admitted <= OffsetDateTime::now_utc(), "an activation in the future: {admitted}");
    while OffsetDateTime::now_utc() < expires - slack {
        for s in [&fast, &slow] {
            let (st, body) = s.get("/concerts", Some(&idle_token));
            assert!(
                st == 200 || OffsetDateTime::now_utc() >= expires - slack,
                "{st} {body}: the token ends at {expires}"
            );
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    wait_for("the token's TTL runs out", Duration::from_secs(5), || fast.get("/concerts", Some(&idle_token)).0 == 401);
    assert!(OffsetDateTime::now_utc() >= expires, "expired before {expires}");
    d.assert_invariants();
}

/// Issue 13's clock-skew report, from outside: two instances on one store, one under
/// `faketime` 30 s ahead, N=5 every 2 s, many tokens waiting. Admission is timed on the store's
/// clock, so together they admit at most N in any 2 s, the skewed instance stamps no activation
/// in the future, and once it stops the other one goes on admitting at once.
fn instances_whose_clocks_disagree_admit_at_most_n_per_interval(q: Queue) {
    const N: usize = 5;
    let interval = time::Duration::seconds(2);
    let d =
        Deployment::new(q, &[("ADMIN_TOKEN", ADMIN), ("QUEUE_ADMIT_BATCH", "5"), ("QUEUE_ADMIT_INTERVAL_SECS", "2")]);
    let (mut honest, mut skewed) = std::thread::scope(|scope| {
        let skewed = scope.spawn(|| d.launch(Launch::new().faketime("+30s")));
        let honest = d.spawn(&[]);
        (honest, skewed.join().unwrap_or_else(|e| std::panic::resume_unwind(e)))
    });
    // The wrapper works: the skewed instance's HTTP `Date` is about 30 s ahead.
    assert_wall_clock_ahead(&skewed, 30);

    let tokens: Vec<String> = (0..80).map(|_| honest.issue_token().1).collect();
    let admitted = |s: &Server| s.queue_state()["admittedThrough"].as_i64().unwrap();
    wait_for("three ticks with both instances running", Duration::from_secs(30), || admitted(&honest) >= 15);
    // The skewed instance alone: its ticks.
    assert!(honest.stop("TERM").success());
    let before = admitted(&skewed);
    wait_for("two ticks of the skewed instance alone", Duration::from_secs(30), || admitted(&skewed) >= before + 10);
    // The honest one again, and the skewed one stops: admission goes on at the next interval,
    // not 30 s later.
    let honest2 = d.spawn(&[]);
    assert!(skewed.stop("TERM").success(), "faketime passes on the server's exit status");
    let before = admitted(&honest2);
    wait_for("a tick of the honest instance after the skewed one left", Duration::from_secs(15), || {
        admitted(&honest2) >= before + 5
    });

    let polled: Vec<Value> = tokens.iter().map(|t| honest2.get("/queue/token", Some(t)).1).collect();
    let now = OffsetDateTime::now_utc();
    let active: Vec<OffsetDateTime> =
        polled.iter().filter(|p| p["status"] == "ACTIVE").map(|p| time_of(&p["activatedAt"])).collect();
    assert!(active.len() >= 30, "{} admitted", active.len());
    // Strict line order: the admitted tokens are the first ones.
    assert!(polled[..active.len()].iter().all(|p| p["status"] == "ACTIVE"), "{polled:?}");
    // No activation time in the future (the skewed clock would put them 30 s ahead).
    let latest = *active.iter().max().unwrap();
    assert!(latest <= now + time::Duration::seconds(1), "an activation at {latest}, now is {now}");
    // At most N in any interval-long window.
    let busiest =
        active.iter().map(|t| active.iter().filter(|u| **u >= *t && **u < *t + interval).count()).max().unwrap();
    assert!(busiest <= N, "{busiest} tokens admitted within one interval: {active:?}");
    eprintln!("{} admitted, at most {busiest} within any {interval}", active.len());
}

// ---- start-up while a store is down (issue 13) ----------------------------------------------

/// The process serves, but nothing that needs the store: live 200, ready 503, and a
/// store-backed request 503 `UNAVAILABLE` with `Retry-After`, answered within 5 s.
fn assert_store_down(s: &Server, store_backed: reqwest::blocking::RequestBuilder) {
    assert_eq!(s.get("/health/live", None).0, 200);
    let ready = s.http.get(s.url("/health/ready")).timeout(Duration::from_secs(5)).send().unwrap();
    assert_eq!(ready.status().as_u16(), 503);
    let resp = store_backed.timeout(Duration::from_secs(5)).send().expect("an answer within 5 s");
    let (st, headers, body) = read_full(resp);
    assert_eq!((st, body["code"].as_str()), (503, Some("UNAVAILABLE")), "{body}");
    assert!(headers.contains_key("retry-after"), "{headers:?}");
}

fn serve_starts_while_its_store_is_down_and_recovers_without_a_restart(q: Queue) {
    match q {
        Queue::Postgres => {
            // Declared first, dropped last: after the server has stopped.
            let mut cluster = PrivatePostgres::init();
            let d = Deployment::on_database(q, &cluster.url("concert_e2e_late"), &[("ADMIN_TOKEN", ADMIN)]);
            let mut s = d.launch(Launch::new().live_only());
            let issue = s.http.post(s.url("/queue/tokens")).json(&json!({"userId": Uuid::new_v4().to_string()}));
            assert_store_down(&s, issue);
            let charge =
                s.http.post(s.url(&format!("/users/{}/balance/charge", Uuid::new_v4()))).json(&json!({"amount": 1}));
            assert_store_down(&s, charge);

            cluster.start();
            let up = std::time::Instant::now();
            wait_for("ready within a few seconds of the database coming up", Duration::from_secs(10), || {
                s.get("/health/ready", None).0 == 200
            });
            eprintln!("ready {:?} after the database came up", up.elapsed());
            let future = (OffsetDateTime::now_utc() + time::Duration::days(3)).format(&Rfc3339).unwrap();
            let body =
                json!({"title": "Late", "schedules": [{"startsAt": future, "seats": [{"number": 1, "price": 3000}]}]});
            let (st, created) = s.send(s.admin(Method::POST, "/admin/concerts").json(&body));
            assert_eq!(st, 201, "{created}");
            let schedule = created["schedules"][0]["id"].as_str().unwrap().to_owned();
            buy_one_seat(&s, &schedule, 0);
            assert!(s.is_running(), "the same process served throughout");
            d.assert_invariants();
        }
        Queue::Redis => {
            let mut redis = PrivateRedis::reserve();
            let d = Deployment::with_redis_at(q, &redis.url(), &[]);
            let mut s = d.launch(Launch::new().live_only());
            // What needs only PostgreSQL works (once the schema task has checked the database).
            let user = Uuid::new_v4().to_string();
            let charge = || s.post(&format!("/users/{user}/balance/charge"), None, json!({"amount": 5})).0;
            wait_for("a charge, which needs only PostgreSQL", Duration::from_secs(30), || charge() == 200);
            let issue = s.http.post(s.url("/queue/tokens")).json(&json!({"userId": Uuid::new_v4().to_string()}));
            assert_store_down(&s, issue);
            let token = "ab".repeat(32);
            let poll = s.http.get(s.url("/queue/token")).bearer_auth(&token);
            assert_store_down(&s, poll);
            assert_eq!(s.balance(&user), 5);

            redis.start();
            let up = std::time::Instant::now();
            wait_for("ready within a few seconds of Redis coming up", Duration::from_secs(10), || {
                s.get("/health/ready", None).0 == 200
            });
            eprintln!("ready {:?} after Redis came up", up.elapsed());
            let (_, token) = s.active_user();
            let (schedule, _) = s.first_schedule(&token);
            buy_one_seat(&s, &schedule, 4);
            assert!(s.is_running(), "the same process served throughout");
            d.assert_invariants();
        }
    }
}

// ---- one-shot commands and `make run`'s fallback --------------------------------------------

/// Short-lived commands exit cleanly every time. They once crashed in about one run in eight:
/// the process exited while the pool was still opening TLS connections in the background.
#[test]
fn one_shot_commands_exit_cleanly_every_time() {
    let db = Database::fresh();
    let mut failures = Vec::new();
    for (cmd, runs) in [("seed-demo", 25), ("check-invariants", 15)] {
        for _ in 0..runs {
            let out = run_command(cmd, &db.url());
            if !out.status.success() {
                failures.push(format!("{cmd}: {} {}", out.status, String::from_utf8_lossy(&out.stderr)));
            }
        }
    }
    assert!(failures.is_empty(), "{failures:#?}");
}

/// Per demo concert: its future schedules, and the seats of each (count, numbers 1..=50,
/// positive prices).
fn demo_shape(url: &str) -> Vec<(i64, i64)> {
    let concerts = support::query_i64s(url, "SELECT count(*) AS n FROM concerts GROUP BY id ORDER BY id");
    assert!(!concerts.is_empty(), "no demo concert");
    let future = support::query_i64s(
        url,
        "SELECT count(s.id) AS n FROM concerts c LEFT JOIN schedules s ON s.concert_id = c.id AND s.starts_at > now() \
         GROUP BY c.id ORDER BY c.id",
    );
    let bad_maps = query_i64(
        url,
        "SELECT count(*) AS n FROM (SELECT schedule_id FROM seats GROUP BY schedule_id \
         HAVING count(*) <> 50 OR min(number) <> 1 OR max(number) <> 50 OR min(price) <= 0) x",
    );
    assert_eq!(bad_maps, 0, "every demo schedule has seats 1 to 50 with positive prices");
    let all = support::query_i64s(url, "SELECT count(s.id) AS n FROM concerts c LEFT JOIN schedules s ON s.concert_id = c.id GROUP BY c.id ORDER BY c.id");
    future.into_iter().zip(all).collect()
}

#[test]
fn seed_demo_is_idempotent_and_keeps_three_future_schedules() {
    let db = Database::fresh();
    let seed = || {
        let out = run_command("seed-demo", &db.url());
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    };
    seed();
    let first = demo_shape(&db.url());
    assert!(first.iter().all(|(future, _)| *future >= 3), "{first:?}");
    seed();
    assert_eq!(demo_shape(&db.url()), first, "a second run adds nothing");

    // Time passes: every schedule is in the past. The next run adds future ones again.
    support::execute(&db.url(), "UPDATE schedules SET starts_at = now() - interval '1 day'");
    assert!(demo_shape(&db.url()).iter().all(|(future, _)| *future == 0));
    seed();
    let later = demo_shape(&db.url());
    assert!(later.iter().all(|(future, _)| *future >= 3), "{later:?}");
    seed();
    assert_eq!(demo_shape(&db.url()), later, "idempotent again");
}

#[test]
fn migrate_creates_the_database_and_a_second_run_changes_nothing() {
    let db = Database::fresh();
    let migrations = std::fs::read_dir(concat!(env!("CARGO_MANIFEST_DIR"), "/migrations"))
        .unwrap()
        .filter(|e| e.as_ref().unwrap().path().is_dir())
        .count() as i64;
    for _ in 0..2 {
        let out = run_command("migrate", &db.url());
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        assert_eq!(query_i64(&db.url(), "SELECT count(*) AS n FROM __diesel_schema_migrations"), migrations);
    }
    for table in ["concerts", "schedules", "seats", "reservations", "accounts", "payments", "queue_tokens"] {
        assert_eq!(query_i64(&db.url(), &format!("SELECT count(*) AS n FROM {table}")), 0, "{table}");
    }
}

#[test]
fn check_invariants_passes_on_a_sound_database_and_names_a_violation() {
    let db = Database::fresh();
    assert!(run_command("seed-demo", &db.url()).status.success());
    let out = run_command("check-invariants", &db.url());
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stdout));
    // A balance with no ledger behind it.
    support::execute(&db.url(), "INSERT INTO accounts (user_id, balance) VALUES (gen_random_uuid(), 5)");
    let out = run_command("check-invariants", &db.url());
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(!out.status.success(), "{stdout}");
    assert!(stdout.contains("violation:") && stdout.contains("ledger sum"), "{stdout}");
}

/// `make run` tries `concert seed-demo` first and falls back to memory when it fails: against a
/// database nobody answers at, it exits non-zero quickly, naming the variable to fix.
#[test]
fn seed_demo_without_a_reachable_database_fails_fast_naming_database_url() {
    let url = format!("postgres://postgres@127.0.0.1:{}/concert", free_port());
    let out = run_command_within("seed-demo", &url, Duration::from_secs(20));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{stderr}");
    assert!(stderr.contains("DATABASE_URL"), "{stderr}");
}

/// `make run`'s fallback, `concert serve --store memory`, with the binary's own defaults and no
/// database at all: the demo catalogue is served and bookable.
#[test]
fn serve_store_memory_serves_the_demo_catalogue_without_a_database() {
    let unreachable = format!("postgres://postgres@127.0.0.1:{}/concert", free_port());
    let mut s = Server::launch(None, Launch::bare().arg("--store").arg("memory").env("DATABASE_URL", &unreachable));
    let (user, token) = s.active_user();
    let (_, concerts) = s.get("/concerts", Some(&token));
    let concert = concerts[0]["id"].as_str().unwrap().to_owned();
    let (_, schedules) = s.get(&format!("/concerts/{concert}/schedules"), Some(&token));
    let schedules = schedules.as_array().unwrap();
    assert!(schedules.len() >= 3, "{schedules:?}");
    let now = OffsetDateTime::now_utc();
    for sc in schedules {
        assert!(time_of(&sc["startsAt"]) > now);
        let (_, seats) = s.get(&format!("/schedules/{}/seats", sc["id"].as_str().unwrap()), Some(&token));
        let numbers: Vec<i64> = seats.as_array().unwrap().iter().map(|x| x["number"].as_i64().unwrap()).collect();
        assert_eq!(numbers, (1..=50).collect::<Vec<_>>());
        assert!(seats.as_array().unwrap().iter().all(|x| x["price"].as_i64().unwrap() > 0));
    }
    let schedule = schedules[0]["id"].as_str().unwrap();
    let (_, seats) = s.get(&format!("/schedules/{schedule}/seats"), Some(&token));
    let (seat, price) = seat_price(seats.as_array().unwrap(), 0);
    s.charge(&user, price);
    let (st, r) = s.post("/reservations", Some(&token), json!({"scheduleId": schedule, "seatId": seat}));
    assert_eq!(st, 201, "{r}");
    let (st, p) = s.post("/payments", Some(&token), json!({"reservationId": r["id"]}));
    assert_eq!(st, 201, "{p}");
    assert!(s.stop("TERM").success());
}
