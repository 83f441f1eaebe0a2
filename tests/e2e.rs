//! Black-box tests of the `concert` binary: each starts `concert serve` on a fresh PostgreSQL
//! database and a free port, and walks the product's sequences over HTTP as a client would.
//!
//! Expiry here uses short real durations (1-2 s) because a black box has no clock to move; the
//! exact boundaries are proven with a manual clock in the domain, conformance and scheduler
//! tests. Every wait is a bounded poll, never a fixed sleep.

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

use serde_json::{json, Value};
use support::{read, run_command, Database, Server};
use uuid::Uuid;

fn seat_price(seats: &[Value], idx: usize) -> (String, i64) {
    (seats[idx]["id"].as_str().unwrap().to_owned(), seats[idx]["price"].as_i64().unwrap())
}

fn seat_status(s: &Server, token: &str, schedule: &str, seat: &str) -> String {
    let (_, seats) = s.get(&format!("/schedules/{schedule}/seats"), Some(token));
    seats.as_array().unwrap().iter().find(|x| x["id"] == seat).unwrap()["status"].as_str().unwrap().to_owned()
}

#[test]
fn a_purchase_walks_the_whole_sequence_including_a_top_up() {
    let s = Server::start(&[("QUEUE_ADMIT_BATCH", "10")]);
    let user = Uuid::new_v4().to_string();

    // 9. charge a little, 8. read it back.
    let (st, b) = s.post(&format!("/users/{user}/balance/charge"), None, json!({ "amount": 1000 }));
    assert_eq!((st, b["balance"].as_i64()), (200, Some(1000)), "{b}");
    assert_eq!(s.balance(&user), 1000);

    // 1. token, 2. poll until ACTIVE.
    let (st, tok) = s.post("/queue/tokens", None, json!({ "userId": user }));
    assert_eq!(st, 201, "{tok}");
    assert_eq!(tok["userId"], user.as_str());
    assert!(["WAITING", "ACTIVE"].contains(&tok["status"].as_str().unwrap()));
    let token = tok["token"].as_str().unwrap().to_owned();
    s.wait_active(&token);
    let (st, polled) = s.get("/queue/token", Some(&token));
    assert_eq!((st, polled["position"].as_i64(), polled["estimatedWaitSecs"].as_i64()), (200, Some(0), Some(0)));
    assert!(polled["activatedAt"].is_string() && polled["expiresAt"].is_string());

    // 4. concerts, schedules, seats.
    let (schedule, seats) = s.first_schedule(&token);
    assert_eq!(seats.len(), 50);
    assert!(seats.iter().all(|x| x["status"] == "AVAILABLE"));
    let (seat, price) = seat_price(&seats, 20);

    // 5. reserve: HELD for the token's user.
    let (st, r) = s.post("/reservations", Some(&token), json!({ "scheduleId": schedule, "seatId": seat }));
    assert_eq!(st, 201, "{r}");
    assert_eq!(
        (r["status"].as_str(), r["userId"].as_str(), r["price"].as_i64()),
        (Some("HELD"), Some(user.as_str()), Some(price))
    );
    let reservation = r["id"].as_str().unwrap().to_owned();
    assert_eq!(seat_status(&s, &token, &schedule, &seat), "HELD");

    // 7. pay with too little: 402, nothing changes.
    let (st, e) = s.post("/payments", Some(&token), json!({ "reservationId": reservation }));
    assert_eq!((st, e["code"].as_str()), (402, Some("INSUFFICIENT_BALANCE")), "{e}");
    assert_eq!(s.balance(&user), 1000);
    let (_, r) = s.get(&format!("/reservations/{reservation}"), Some(&token));
    assert_eq!(r["status"], "HELD");

    // top up, pay again: 201, debited once, seat SOLD, token used up.
    let (st, _) = s.post(&format!("/users/{user}/balance/charge"), None, json!({ "amount": price }));
    assert_eq!(st, 200);
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
    assert_eq!(seat_status(&s, &token2, &schedule, &seat), "SOLD");
    let (_, r) = s.get(&format!("/reservations/{reservation}"), Some(&token2));
    assert_eq!(r["status"], "PAID");
    s.assert_invariants();
}

#[test]
fn a_hold_lapses_and_the_seat_is_free_again() {
    let s = Server::start(&[("SEAT_HOLD_SECS", "1")]);
    let (user, token) = s.active_user();
    let (schedule, seats) = s.first_schedule(&token);
    let (seat, price) = seat_price(&seats, 0);
    s.post(&format!("/users/{user}/balance/charge"), None, json!({ "amount": price }));
    let (st, r) = s.post("/reservations", Some(&token), json!({ "scheduleId": schedule, "seatId": seat }));
    assert_eq!(st, 201, "{r}");
    let reservation = r["id"].as_str().unwrap().to_owned();

    s.wait_for(Duration::from_secs(10), || seat_status(&s, &token, &schedule, &seat) == "AVAILABLE");
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

#[test]
fn an_active_token_expires_after_its_ttl() {
    let s = Server::start(&[("QUEUE_ACTIVE_TTL_SECS", "1")]);
    let (user, token) = s.active_user();
    s.wait_for(Duration::from_secs(10), || s.get("/concerts", Some(&token)).0 == 401);
    let (st, e) = s.get("/concerts", Some(&token));
    assert_eq!((st, e["code"].as_str()), (401, Some("TOKEN_EXPIRED")));
    let (st, polled) = s.get("/queue/token", Some(&token));
    assert_eq!((st, polled["status"].as_str()), (200, Some("EXPIRED")));
    // The user may queue again and gets a new token.
    let (st, again) = s.post("/queue/tokens", None, json!({ "userId": user }));
    assert_eq!(st, 201, "{again}");
    assert_ne!(again["token"].as_str(), Some(token.as_str()));
}

#[test]
fn a_waiting_token_is_refused_and_keeps_its_place() {
    let s = Server::start(&[("SCHEDULER_ENABLED", "false")]);
    let mut tokens = Vec::new();
    for expected_position in 1..=3 {
        let user = Uuid::new_v4().to_string();
        let (st, t) = s.post("/queue/tokens", None, json!({ "userId": user }));
        assert_eq!(st, 201);
        assert_eq!((t["status"].as_str(), t["position"].as_i64()), (Some("WAITING"), Some(expected_position)), "{t}");
        tokens.push((user, t["token"].as_str().unwrap().to_owned()));
    }
    let (user, token) = &tokens[1];
    let (st, e) = s.get("/concerts", Some(token));
    assert_eq!((st, e["code"].as_str()), (403, Some("TOKEN_NOT_ACTIVE")), "{e}");
    let (st, e) =
        s.post("/reservations", Some(token), json!({ "scheduleId": Uuid::new_v4(), "seatId": Uuid::new_v4() }));
    assert_eq!((st, e["code"].as_str()), (403, Some("TOKEN_NOT_ACTIVE")));
    // One place in line per user: asking again returns the same token, 200.
    let (st, same) = s.post("/queue/tokens", None, json!({ "userId": user }));
    assert_eq!((st, same["token"].as_str(), same["position"].as_i64()), (200, Some(token.as_str()), Some(2)));
}

#[test]
fn fifty_users_racing_for_one_seat_make_one_reservation() {
    let s = Server::start(&[("QUEUE_ADMIT_BATCH", "100")]);
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

#[test]
fn twenty_payments_of_one_reservation_debit_once() {
    let s = Server::start(&[]);
    let (user, token) = s.active_user();
    let (schedule, seats) = s.first_schedule(&token);
    let (seat, price) = seat_price(&seats, 3);
    s.post(&format!("/users/{user}/balance/charge"), None, json!({ "amount": price * 10 }));
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

/// One malformed or refused request and what the contract says it gets.
struct Bad {
    method: &'static str,
    path: String,
    auth: Option<String>,
    content_type: Option<&'static str>,
    body: Option<String>,
    status: u16,
    code: &'static str,
}

fn get(path: impl Into<String>) -> Bad {
    Bad { method: "GET", path: path.into(), auth: None, content_type: None, body: None, status: 0, code: "" }
}

/// A POST with a JSON content type.
fn post(path: impl Into<String>, body: impl Into<String>) -> Bad {
    Bad { method: "POST", content_type: Some("application/json"), body: Some(body.into()), ..get(path) }
}

impl Bad {
    fn auth(self, header: impl Into<String>) -> Self {
        Self { auth: Some(header.into()), ..self }
    }

    fn content_type(self, ct: &'static str) -> Self {
        Self { content_type: Some(ct), ..self }
    }

    fn expect(self, status: u16, code: &'static str) -> Self {
        Self { status, code, ..self }
    }
}

#[test]
fn bad_inputs_get_their_code_change_nothing_and_never_a_500() {
    let s = Server::start(&[]);
    let (user, token) = s.active_user();
    let (schedule, seats) = s.first_schedule(&token);
    let (seat, price) = seat_price(&seats, 0);
    s.post(&format!("/users/{user}/balance/charge"), None, json!({ "amount": 5000 }));
    let (_, other_schedule_seats) = {
        let (_, concerts) = s.get("/concerts", Some(&token));
        let c = concerts[0]["id"].as_str().unwrap().to_owned();
        let (_, schedules) = s.get(&format!("/concerts/{c}/schedules"), Some(&token));
        let other = schedules[1]["id"].as_str().unwrap().to_owned();
        let (_, seats) = s.get(&format!("/schedules/{other}/seats"), Some(&token));
        (other, seats)
    };
    let foreign_seat = other_schedule_seats[0]["id"].as_str().unwrap().to_owned();
    let (_, r) = s.post("/reservations", Some(&token), json!({ "scheduleId": schedule, "seatId": seat }));
    let reservation = r["id"].as_str().unwrap().to_owned();

    let big = format!("{{\"amount\": 1, \"pad\": \"{}\"}}", "x".repeat(17 * 1024));
    let forged = "ab".repeat(32);
    let b = format!("Bearer {token}");
    let charge = format!("/users/{user}/balance/charge");
    let hold = |extra: &str| format!(r#"{{"scheduleId":"{schedule}","seatId":"{seat}"{extra}}}"#);
    let cases = vec![
        post("/queue/tokens", "{").expect(400, "INVALID_REQUEST"),
        post("/queue/tokens", r#"{"userId":"nope"}"#).expect(400, "INVALID_REQUEST"),
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
        get("/users/not-a-uuid/balance").expect(400, "INVALID_REQUEST"),
        post(&charge, r#"{"amount":0}"#).expect(400, "INVALID_AMOUNT"),
        post(&charge, r#"{"amount":-5}"#).expect(400, "INVALID_AMOUNT"),
        post(&charge, r#"{"amount":1.5}"#).expect(400, "INVALID_AMOUNT"),
        post(&charge, r#"{"amount":"100"}"#).expect(400, "INVALID_AMOUNT"),
        post(&charge, r#"{"amount":1000000001}"#).expect(400, "INVALID_AMOUNT"),
        post(&charge, r#"{"amount":99999999999999999999999}"#).expect(400, "INVALID_AMOUNT"),
        post(&charge, "[1,2").expect(400, "INVALID_REQUEST"),
        post(&charge, big).expect(413, "PAYLOAD_TOO_LARGE"),
    ];

    let mut failures = Vec::new();
    for c in &cases {
        let mut req = s.http.request(c.method.parse().unwrap(), s.url(&c.path));
        if let Some(a) = &c.auth {
            req = req.header("Authorization", a);
        }
        if let Some(ct) = c.content_type {
            req = req.header("Content-Type", ct);
        }
        if let Some(b) = &c.body {
            req = req.body(b.clone());
        }
        let resp = req.send().unwrap();
        let ct = resp.headers().get("content-type").map(|v| v.to_str().unwrap_or("").to_owned()).unwrap_or_default();
        let (status, body) = read(resp);
        let text = body.to_string().to_lowercase();
        let leaks = ["select ", "diesel", "panicked", "domain::", "sqlstate"].iter().any(|w| text.contains(w));
        if status != c.status || body["code"] != c.code || !ct.starts_with("application/problem+json") || leaks {
            failures
                .push(format!("{} {} -> {status} {ct} {body} (expected {} {})", c.method, c.path, c.status, c.code));
        }
        for key in ["type", "title", "status", "detail", "code"] {
            if body.get(key).is_none() {
                failures.push(format!("{} {}: problem body lacks `{key}`: {body}", c.method, c.path));
            }
        }
    }
    assert!(failures.is_empty(), "contract violations:\n{}", failures.join("\n"));

    // Nothing changed: one reservation (HELD), the balance as charged, no payment.
    assert_eq!(s.balance(&user), 5000);
    assert!(price > 5000, "the demo's cheapest seat must cost more than the test balance");
    let (_, r) = s.get(&format!("/reservations/{reservation}"), Some(&token));
    assert_eq!(r["status"], "HELD");
    assert_eq!(s.count("SELECT count(*) AS n FROM reservations"), 1);
    assert_eq!(s.count("SELECT count(*) AS n FROM payments"), 0);

    // BALANCE_LIMIT: 10 x 1e9 reaches the limit exactly; one won more is refused.
    let rich = Uuid::new_v4().to_string();
    for _ in 0..10 {
        let (st, _) = s.post(&format!("/users/{rich}/balance/charge"), None, json!({ "amount": 1_000_000_000 }));
        assert_eq!(st, 200);
    }
    let (st, e) = s.post(&format!("/users/{rich}/balance/charge"), None, json!({ "amount": 1 }));
    assert_eq!((st, e["code"].as_str()), (409, Some("BALANCE_LIMIT")), "{e}");
    assert_eq!(s.balance(&rich), 10_000_000_000);
    s.assert_invariants();
}

#[test]
fn openapi_and_health_are_served() {
    let s = Server::start(&[]);
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
        "/health/live",
        "/health/ready",
    ] {
        assert!(paths.contains_key(p), "openapi lacks {p}: {:?}", paths.keys());
    }
    assert_eq!(s.get("/health/live", None).0, 200);
    assert_eq!(s.get("/health/ready", None).0, 200);
}

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
