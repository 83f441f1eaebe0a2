//! The operator API across instances, restarts and clocks that disagree (issues 13 and 21).

use super::*;

pub(crate) fn every_admin_endpoint_and_error_row_through_the_binary(q: Queue) {
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
    assert_eq!(support::metric_in(&text, "queue_tokens_issued_total{room=\"main\"}"), 3.0, "{text}");
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

pub(crate) fn a_pause_holds_on_every_instance_and_across_a_restart(q: Queue) {
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

pub(crate) fn a_change_of_n_on_one_instance_is_used_by_the_next_tick_of_another(q: Queue) {
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
pub(crate) fn concurrent_operator_changes_through_two_instances_are_never_lost(q: Queue) {
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
    // The operator log kept in the store (`GET /admin/audit`, the same through either
    // instance) holds one line per change, and its "before"s chain like the servers' log lines.
    let mut audit: Vec<Value> = Vec::new();
    let mut next: Option<i64> = None;
    loop {
        let path =
            next.map_or_else(|| "/admin/audit?limit=100".to_owned(), |b| format!("/admin/audit?limit=100&before={b}"));
        let (st, page) = pair[0].send(pair[0].admin(reqwest::Method::GET, &path));
        assert_eq!(st, 200, "{page}");
        audit.extend(page["entries"].as_array().unwrap().iter().cloned());
        match page["nextBefore"].as_i64() {
            Some(b) => next = Some(b),
            None => break,
        }
    }
    let updates: Vec<&Value> = audit.iter().filter(|e| e["action"] == "queue.update").collect();
    assert_eq!(updates.len(), 4 * usize::try_from(ROUNDS).unwrap(), "one line per change in the store's log");
    let (_, other) = pair[1].send(pair[1].admin(reqwest::Method::GET, "/admin/audit?limit=1"));
    assert_eq!(other["entries"][0], audit[0], "both instances read the one log");

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
pub(crate) fn assert_wall_clock_ahead(s: &Server, secs: i64) {
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
pub(crate) fn holds_and_tokens_are_timed_on_the_stores_clock_whatever_each_instance_says(q: Queue) {
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
pub(crate) fn instances_whose_clocks_disagree_admit_at_most_n_per_interval(q: Queue) {
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
