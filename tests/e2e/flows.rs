//! The buyer's flows through the binary, on each queue store.

use super::*;

pub(crate) fn a_purchase_walks_the_whole_sequence_and_the_instance_stops_cleanly(q: Queue) {
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

pub(crate) fn a_hold_lapses_and_the_seat_is_free_again(q: Queue) {
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

pub(crate) fn an_active_token_expires_after_its_ttl(q: Queue) {
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

pub(crate) fn a_waiting_token_is_refused_and_keeps_its_place(q: Queue) {
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

pub(crate) fn fifty_users_racing_for_one_seat_make_one_reservation(q: Queue) {
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

pub(crate) fn twenty_payments_of_one_reservation_debit_once(q: Queue) {
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
pub(crate) fn one_token_pays_once_for_concurrent_payments_of_three_seats(q: Queue) {
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
pub(crate) struct Bad {
    pub(crate) method: &'static str,
    pub(crate) path: String,
    pub(crate) auth: Option<String>,
    pub(crate) content_type: Option<&'static str>,
    pub(crate) headers: Vec<(&'static str, String)>,
    pub(crate) body: Option<String>,
    pub(crate) status: u16,
    pub(crate) code: &'static str,
}

pub(crate) fn get(path: impl Into<String>) -> Bad {
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
pub(crate) fn with_body(method: &'static str, path: impl Into<String>, body: impl Into<String>) -> Bad {
    Bad { method, content_type: Some("application/json"), body: Some(body.into()), ..get(path) }
}

pub(crate) fn post(path: impl Into<String>, body: impl Into<String>) -> Bad {
    with_body("POST", path, body)
}

impl Bad {
    pub(crate) fn auth(self, header: impl Into<String>) -> Self {
        Self { auth: Some(header.into()), ..self }
    }

    pub(crate) fn content_type(self, ct: &'static str) -> Self {
        Self { content_type: Some(ct), ..self }
    }

    pub(crate) fn header(mut self, name: &'static str, value: impl Into<String>) -> Self {
        self.headers.push((name, value.into()));
        self
    }

    pub(crate) fn expect(self, status: u16, code: &'static str) -> Self {
        Self { status, code, ..self }
    }
}

/// Sends every case; returns one line per contract violation (status, code, content type, a
/// leak of internals, a problem field missing).
pub(crate) fn check_cases(s: &Server, cases: &[Bad]) -> Vec<String> {
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

pub(crate) fn bad_inputs_get_their_code_change_nothing_and_never_a_500(q: Queue) {
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

pub(crate) fn openapi_health_and_metrics_are_served_and_sigint_stops_cleanly(q: Queue) {
    let mut s = Server::start(q, &[]);
    // The first scrape, before any traffic: every family of the contract, and every series
    // whose labels are known at start, at 0 (so an alert on a failure can fire on the first).
    let first = s.metrics();
    for (family, kind) in [
        ("http_requests_total", "counter"),
        ("http_request_duration_seconds", "histogram"),
        ("queue_waiting", "gauge"),
        ("queue_active", "gauge"),
        ("queue_tokens_issued_total", "counter"),
        ("queue_tokens_admitted_total", "counter"),
        ("queue_tokens_abandoned_total", "counter"),
        ("queue_paused", "gauge"),
        ("reservations_held_total", "counter"),
        ("payments_total", "counter"),
        ("store_errors_total", "counter"),
        ("db_pool_connections", "gauge"),
    ] {
        assert!(
            first.contains(&format!("# TYPE {family} {kind}\n")),
            "no {kind} {family} at the first scrape:\n{first}"
        );
    }
    for series in [
        "payments_total 0",
        "reservations_held_total 0",
        "queue_tokens_issued_total{room=\"main\"} 0",
        "queue_tokens_admitted_total{room=\"main\"} 0",
        "queue_tokens_abandoned_total{room=\"main\"} 0",
        "queue_waiting{room=\"main\"} 0",
        "queue_paused{room=\"main\"} 0",
    ] {
        assert!(first.lines().any(|l| l == series), "no `{series}` at the first scrape:\n{first}");
    }
    // Every kind is there, at 0 unless the readiness probes that waited for the database to be
    // migrated already counted it unavailable.
    for kind in ["unavailable", "timeout", "internal"] {
        let series = format!(r#"store_errors_total{{kind="{kind}"}} "#);
        assert!(first.lines().any(|l| l.starts_with(&series)), "no `{series}` at the first scrape:\n{first}");
    }
    assert!(
        first.contains(r#"db_pool_connections{state="idle"}"#)
            && first.contains(r#"db_pool_connections{state="busy"}"#)
    );
    let (st, doc) = s.get("/openapi.json", None);
    assert_eq!(st, 200);
    assert!(doc["openapi"].as_str().unwrap_or("").starts_with('3'), "{doc}");
    let paths: HashMap<String, Value> = serde_json::from_value(doc["paths"].clone()).unwrap();
    for p in [
        "/queue/tokens",
        "/queue/token",
        "/rooms",
        "/rooms/{roomId}",
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
    assert!(support::metric_in(&text, "queue_tokens_issued_total{room=\"main\"}") >= 1.0, "{text}");
    assert!(support::metric_in(&text, "queue_tokens_admitted_total{room=\"main\"}") >= 1.0, "{text}");

    // SIGINT (Ctrl-C): a graceful stop, exit code 0.
    let status = s.stop("INT");
    assert!(status.success(), "SIGINT ended concert serve with {status}");
}
