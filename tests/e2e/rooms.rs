//! Rooms through the binary, on both queue stores: a pre-queue drawn once by two instances
//! whose clocks are a minute apart, a token of one room refused everywhere in another, and the
//! places of buyers who stopped polling skipped and counted.

use super::*;

fn rfc3339(t: OffsetDateTime) -> String {
    t.format(&Rfc3339).unwrap()
}

/// `POST /admin/rooms`, asserted 201.
fn create_room(s: &Server, body: Value) -> Value {
    let (st, room) = s.send(s.admin(Method::POST, "/admin/rooms").json(&body));
    assert_eq!(st, 201, "POST /admin/rooms {body}: {room}");
    room
}

fn admin_room(s: &Server, id: &str) -> Value {
    let (st, room) = s.send(s.admin(Method::GET, &format!("/admin/rooms/{id}")));
    assert_eq!(st, 200, "{room}");
    room
}

/// Joins `room` for a new user; returns the user and the token body.
fn join(s: &Server, room: &str) -> (String, Value) {
    let user = Uuid::new_v4().to_string();
    let (st, body) = s.post("/queue/tokens", None, json!({ "userId": user, "roomId": room }));
    assert_eq!(st, 201, "{body}");
    (user, body)
}

/// Issue 16: two instances, one 30 s ahead and one 30 s behind under `faketime`, reach a
/// room's opening together. The pre-queue is drawn once, on the store's clock, from a seed
/// that recomputes the order (`concert draw-order`), and the first admission takes the drawn
/// first N.
pub(crate) fn a_prequeue_is_drawn_once_by_instances_whose_clocks_disagree(q: Queue) {
    const ENTRANTS: usize = 12;
    const N: i64 = 3;
    let d = Deployment::new(q, &[("SCHEDULER_CHECK_MILLIS", "200"), ("ADMIN_TOKEN", ADMIN)]);
    let (fast, slow) = std::thread::scope(|scope| {
        let fast = scope.spawn(|| d.launch(Launch::new().faketime("+30s")));
        let slow = d.launch(Launch::new().faketime("-30s"));
        (fast.join().unwrap_or_else(|e| std::panic::resume_unwind(e)), slow)
    });
    // The test's clock is the store's (one machine).
    let opens = (OffsetDateTime::now_utc() + time::Duration::seconds(6)).replace_nanosecond(0).unwrap();
    let room = create_room(
        &slow,
        json!({"id": "tour", "name": "Stadium tour", "concertIds": [], "opensAt": rfc3339(opens),
               "prequeueOpensAt": rfc3339(OffsetDateTime::now_utc() - time::Duration::seconds(1)),
               "admitBatch": N, "admitIntervalSecs": 3600}),
    );
    assert_eq!((room["state"].as_str(), room["drawAtOpen"].as_bool()), (Some("PREQUEUE"), Some(true)));
    let mut tokens = Vec::new();
    for i in 0..ENTRANTS {
        let s = if i % 2 == 0 { &fast } else { &slow };
        let (_, body) = join(s, "tour");
        assert_eq!((body["position"].clone(), body["drawAt"].clone()), (Value::Null, json!(rfc3339(opens))), "{body}");
        tokens.push(body["token"].as_str().unwrap().to_owned());
    }
    // The fast instance believes the room opened 24 s ago; the store says it has not.
    let (_, early) = fast.get("/queue/token", Some(&tokens[0]));
    assert_eq!(early["position"], Value::Null, "no position before the opening: {early}");

    wait_for("the draw", Duration::from_secs(30), || !admin_room(&slow, "tour")["draw"].is_null());
    let view = admin_room(&fast, "tour");
    let draw = &view["draw"];
    assert!(time_of(&draw["at"]) >= opens, "drawn at {} before the opening {opens}", draw["at"]);
    assert_eq!(draw["entrants"], ENTRANTS, "{view}");
    assert_eq!(admin_room(&slow, "tour")["draw"], *draw, "one draw, seen alike by both");
    wait_for("the first admission", Duration::from_secs(10), || admin_room(&slow, "tour")["admittedThrough"] == N);

    // The order recomputed from the seed: entrants by token value, positions from the command.
    let out = std::process::Command::new(support::concert_bin())
        .args(["draw-order", "--seed", &draw["seed"].to_string(), "--entrants", &ENTRANTS.to_string()])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let order: Vec<i64> = String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .map(|l| l.split_whitespace().nth(1).unwrap().parse().unwrap())
        .collect();
    let mut by_value = tokens.clone();
    by_value.sort();
    // Each instance answers polls from a copy of the line's cursor at most half a second old.
    wait_for("every instance shows the drawn line", Duration::from_secs(5), || {
        [&fast, &slow].iter().all(|s| tokens.iter().all(|t| s.get("/queue/token", Some(t)).1["drawAt"].is_null()))
    });
    for (i, token) in by_value.iter().enumerate() {
        let (st, body) = slow.get("/queue/token", Some(token));
        assert_eq!(st, 200);
        if order[i] <= N {
            assert_eq!(body["status"], "ACTIVE", "drawn {}: {body}", order[i]);
        } else {
            assert_eq!(
                (body["status"].as_str(), body["position"].as_i64()),
                (Some("WAITING"), Some(order[i] - N)),
                "{body}"
            );
        }
    }
    // Later arrivals follow the drawn.
    let (_, late) = join(&fast, "tour");
    assert_eq!(late["position"], ENTRANTS as i64 - N + 1, "{late}");
    let drew = [&fast, &slow].iter().filter(|s| s.log_tail(400).contains("drew the pre-queue's order")).count();
    assert_eq!(drew, 1, "exactly one instance drew");
}

/// A token of one room opens nothing of another: 403 `ROOM_MISMATCH` naming the room on every
/// route of a concert it does not sell, and a payment there takes nothing.
pub(crate) fn a_token_of_one_room_is_refused_for_another_rooms_concert(q: Queue) {
    let s = Server::start(q, &[("ADMIN_TOKEN", ADMIN)]);
    let (user, main_token) = s.active_user();
    let (concerts_status, concerts) = s.get("/concerts", Some(&main_token));
    assert_eq!(concerts_status, 200);
    let concert = concerts[0]["id"].as_str().unwrap().to_owned();
    let (schedule, seats) = s.first_schedule(&main_token);
    create_room(&s, json!({"id": "tour", "name": "Tour", "concertIds": [concert], "admitBatch": 10}));
    // The main token no longer opens it (the rooms are re-read at each check).
    wait_for("the room gates its concert", Duration::from_secs(10), || {
        s.get(&format!("/concerts/{concert}/schedules"), Some(&main_token)).0 == 403
    });
    let (st, p) = s.get(&format!("/concerts/{concert}/schedules"), Some(&main_token));
    assert_eq!((st, p["code"].as_str(), p["roomId"].as_str()), (403, Some("ROOM_MISMATCH"), Some("tour")), "{p}");
    let (st, p) = s.get(&format!("/schedules/{schedule}/seats"), Some(&main_token));
    assert_eq!((st, p["roomId"].as_str()), (403, Some("tour")), "{p}");
    let (st, p) = s.post("/reservations", Some(&main_token), json!({"scheduleId": schedule, "seatId": seats[0]["id"]}));
    assert_eq!((st, p["code"].as_str()), (403, Some("ROOM_MISMATCH")), "{p}");

    let (st, body) = s.post("/queue/tokens", None, json!({"userId": user, "roomId": "tour"}));
    assert_eq!(st, 201, "a second place, in the other room: {body}");
    let tour_token = body["token"].as_str().unwrap().to_owned();
    s.wait_active(&tour_token);
    let (st, hold) =
        s.post("/reservations", Some(&tour_token), json!({"scheduleId": schedule, "seatId": seats[0]["id"]}));
    assert_eq!(st, 201, "{hold}");
    let price = seats[0]["price"].as_i64().unwrap();
    s.charge(&user, price);
    let (st, p) = s.post("/payments", Some(&main_token), json!({"reservationId": hold["id"]}));
    assert_eq!((st, p["code"].as_str()), (403, Some("ROOM_MISMATCH")), "{p}");
    assert_eq!(s.get(&format!("/users/{user}/balance"), None).1["balance"], price, "nothing paid");
    let (st, paid) = s.post("/payments", Some(&tour_token), json!({"reservationId": hold["id"]}));
    assert_eq!(st, 201, "{paid}");
    assert_eq!(s.get("/queue/token", Some(&tour_token)).1["expiredReason"], "PAID");
    assert_eq!(s.get("/queue/token", Some(&main_token)).1["status"], "ACTIVE", "no token of another room used up");
    s.assert_invariants();
}

/// Buyers who stop polling lose their place at their turn: with `abandonAfterSecs` 30, the
/// silent are skipped (EXPIRED, `ABANDONED`), counted in the room and the metric, and each
/// admission still lets in N buyers who are there.
pub(crate) fn buyers_who_stop_polling_are_skipped_at_their_turn(q: Queue) {
    const ABANDON: u64 = 30;
    let s = Server::start(q, &[("SCHEDULER_CHECK_MILLIS", "200"), ("ADMIN_TOKEN", ADMIN)]);
    create_room(
        &s,
        json!({"id": "tour", "name": "Tour", "concertIds": [], "abandonAfterSecs": ABANDON, "admitBatch": 2}),
    );
    let (st, paused) = s.send(s.admin(Method::PATCH, "/admin/rooms/tour").json(&json!({"paused": true})));
    assert_eq!((st, paused["state"].as_str()), (200, Some("PAUSED")), "{paused}");
    let tokens: Vec<String> = (0..6).map(|_| join(&s, "tour").1["token"].as_str().unwrap().to_owned()).collect();
    // Buyers 0, 2 and 4 keep polling; 1, 3 and 5 have left.
    let silent_since = std::time::Instant::now();
    while silent_since.elapsed() < Duration::from_secs(ABANDON + 6) {
        for t in [&tokens[0], &tokens[2], &tokens[4]] {
            assert_eq!(s.get("/queue/token", Some(t)).1["status"], "WAITING");
        }
        std::thread::sleep(Duration::from_secs(2));
    }
    let (st, _) = s.send(s.admin(Method::PATCH, "/admin/rooms/tour").json(&json!({"paused": false})));
    assert_eq!(st, 200);
    wait_for("every place decided", Duration::from_secs(20), || admin_room(&s, "tour")["waiting"] == 0);
    for (i, t) in tokens.iter().enumerate() {
        let body = s.get("/queue/token", Some(t)).1;
        if i % 2 == 0 {
            assert_eq!(body["status"], "ACTIVE", "buyer {i} polled: {body}");
        } else {
            assert_eq!(
                (body["status"].as_str(), body["expiredReason"].as_str()),
                (Some("EXPIRED"), Some("ABANDONED")),
                "buyer {i}: {body}"
            );
        }
    }
    let view = admin_room(&s, "tour");
    assert_eq!((view["abandoned"].as_i64(), view["admittedThrough"].as_i64()), (Some(3), Some(6)), "{view}");
    assert_eq!(s.metric("queue_tokens_abandoned_total{room=\"tour\"}"), 3.0);
    assert_eq!(s.metric("queue_tokens_admitted_total{room=\"tour\"}"), 3.0);
}
