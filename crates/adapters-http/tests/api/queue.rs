//! The waiting queue: issue, poll, pace and pause, the poll cache, store deadlines.

use super::*;

#[actix_web::test]
async fn issuing_gives_one_place_per_user_with_its_pace_and_pause() {
    let world = World::new();
    let app = app(world.state()).await;
    let user = Uuid::new_v4();
    let first = call(&app, post("/queue/tokens").set_json(json!({"userId": user}))).await;
    assert_eq!(first.status, 201, "{first:?}");
    let b = &first.body;
    assert_eq!(b["userId"], json!(user.to_string()));
    assert_eq!(b["status"], "WAITING");
    assert_eq!(b["position"], 1);
    assert_eq!(b["paused"], false);
    assert!(b["pollAfterSecs"].as_i64().unwrap() >= 1, "{b}");
    assert!(b["estimatedWaitSecs"].as_i64().is_some());
    assert!(b["issuedAt"].as_str().unwrap().ends_with('Z'));
    assert_eq!(b["activatedAt"], Value::Null);
    assert_eq!(b["expiresAt"], Value::Null);
    assert_eq!(b["token"].as_str().unwrap().len(), 64);

    let again = call(&app, post("/queue/tokens").set_json(json!({"userId": user}))).await;
    assert_eq!(again.status, 200);
    assert_eq!(again.body["token"], b["token"]);

    let token = b["token"].as_str().unwrap().to_owned();
    let polled = call(&app, get("/queue/token").insert_header(bearer(&token))).await;
    assert_eq!(polled.status, 200);
    assert_eq!(polled.body["status"], "WAITING");
    assert_eq!(polled.body["position"], 1);

    world.admit();
    let polled = call(&app, get("/queue/token").insert_header(bearer(&token))).await;
    assert_eq!(polled.body["status"], "ACTIVE");
    assert_eq!(polled.body["position"], 0);
    assert_eq!(polled.body["pollAfterSecs"], 0);
    assert!(polled.body["expiresAt"].is_string());
}

#[actix_web::test]
async fn issuing_refuses_malformed_bodies_and_ids() {
    let world = World::new();
    let app = app(world.state()).await;
    let upper = Uuid::new_v4().to_string().to_uppercase();
    let simple = Uuid::new_v4().simple().to_string();
    for body in [
        r#"{"userId": "not-a-uuid"}"#.to_owned(),
        format!(r#"{{"userId": "{upper}"}}"#),
        format!(r#"{{"userId": "{simple}"}}"#),
        format!(r#"["{}"]"#, Uuid::new_v4()),
        format!(r#"{{"userId": "{}", "extra": 1}}"#, Uuid::new_v4()),
        r#"{"userId": 5}"#.to_owned(),
        "{".to_owned(),
        "{}".to_owned(),
    ] {
        let res = call(&app, post("/queue/tokens").insert_header(json_type()).set_payload(body.clone())).await;
        assert_problem(&res, 400, "INVALID_REQUEST");
        assert!(!res.raw.contains("Uuid") && !res.raw.contains("CanonicalUuid"), "{body}: {}", res.raw);
    }
    let res = call(&app, post("/queue/tokens").set_payload(format!(r#"{{"userId": "{}"}}"#, Uuid::new_v4()))).await;
    assert_problem(&res, 400, "INVALID_REQUEST");
    assert_eq!(world.ticketing.queue_state().unwrap().stats.waiting, 0, "nothing was stored");
}

#[actix_web::test]
async fn polling_needs_a_known_bearer() {
    let world = World::new();
    let app = app(world.state()).await;
    let res = call(&app, get("/queue/token")).await;
    assert_problem(&res, 401, "TOKEN_MISSING");
    assert!(res.header("www-authenticate").unwrap().starts_with("Bearer"));
    let res = call(&app, get("/queue/token").insert_header(("Authorization", "Basic abc"))).await;
    assert_problem(&res, 401, "TOKEN_MISSING");
    let res = call(&app, get("/queue/token").insert_header(bearer("nope"))).await;
    assert_problem(&res, 401, "TOKEN_INVALID");
    let res = call(&app, get("/queue/token").insert_header(bearer(&"a".repeat(64)))).await;
    assert_problem(&res, 401, "TOKEN_INVALID");
    assert!(res.header("www-authenticate").unwrap().contains("invalid_token"));
}

#[actix_web::test]
async fn a_cached_waiting_poll_is_answered_without_a_store_slot() {
    let world = World::new();
    let ticker = Arc::new(ManualTicker::new());
    let mut ports = world.ports();
    ports.queue = Arc::new(CachedQueue::new(ports.queue.clone(), ticker.clone(), PollCacheSettings::default()));
    ports.settings = Arc::new(CachedSettings::new(ports.settings.clone(), ticker, StdDuration::from_secs(60)));
    let blocker = Blocker::new();
    let ticketing = scripted(ports, Script::BlockBalance(blocker.clone()));
    let state = ApiState::builder(ticketing).store_slots(1).slot_wait(StdDuration::from_millis(50)).build();
    let app = app(state).await;
    let token = issue(&app, Uuid::new_v4()).await;
    // Warm the cache once (the issue may already have).
    let _ = call(&app, get("/queue/token").insert_header(bearer(&token))).await;

    // The only slot is taken by a store call that does not return until released.
    let held = call(&app, get(&format!("/users/{}/balance", Uuid::new_v4())));
    let others = async {
        blocker.wait_until_blocked().await;
        let poll = call(&app, get("/queue/token").insert_header(bearer(&token))).await;
        let live = call(&app, get("/health/live")).await;
        let starved = call(&app, get(&format!("/users/{}/balance", Uuid::new_v4()))).await;
        blocker.release();
        (poll, live, starved)
    };
    let (held, (poll, live, starved)) = futures_util::future::join(held, others).await;
    assert_eq!(poll.status, 200, "a cached WAITING poll needs no slot: {poll:?}");
    assert_eq!(poll.body["status"], "WAITING");
    assert_eq!(live.status, 200);
    assert_problem(&starved, 503, "UNAVAILABLE");
    assert_eq!(starved.header("retry-after"), Some("1"));
    // The call that had started was answered by its result, however long it took.
    assert_eq!(held.status, 200, "{held:?}");
}

/// Token issue has slots of its own: an issue waits for its batch's group commit, not for a
/// read that holds the last general slot, and issues never take a read's slot.
#[actix_web::test]
async fn token_issue_does_not_wait_for_a_store_slot_a_read_holds() {
    let world = World::new();
    let blocker = Blocker::new();
    let ticketing = scripted(world.ports(), Script::BlockBalance(blocker.clone()));
    let state =
        ApiState::builder(ticketing).store_slots(1).issue_slots(1).slot_wait(StdDuration::from_millis(50)).build();
    let app = app(state).await;
    let held = call(&app, get(&format!("/users/{}/balance", Uuid::new_v4())));
    let others = async {
        blocker.wait_until_blocked().await;
        let issued = call(&app, post("/queue/tokens").set_json(json!({"userId": Uuid::new_v4()}))).await;
        let starved = call(&app, get(&format!("/users/{}/balance", Uuid::new_v4()))).await;
        blocker.release();
        (issued, starved)
    };
    let (held, (issued, starved)) = futures_util::future::join(held, others).await;
    assert_eq!(issued.status, 201, "an issue does not wait behind a read: {issued:?}");
    assert_problem(&starved, 503, "UNAVAILABLE");
    assert_eq!(held.status, 200, "{held:?}");
}

#[actix_web::test]
async fn a_store_that_stops_answering_gets_503_at_the_deadline_and_its_slot_back_later() {
    let world = World::new();
    let blocker = Blocker::new();
    let ticketing = scripted(world.ports(), Script::BlockBalance(blocker.clone()));
    let state = ApiState::builder(ticketing)
        .store_slots(1)
        .slot_wait(StdDuration::from_millis(50))
        .store_deadline(StdDuration::from_millis(200))
        .build();
    let app = app(state).await;
    // A call on a store that never answers (a frozen server) is answered 503 at the deadline.
    let frozen = call(&app, get(&format!("/users/{}/balance", Uuid::new_v4()))).await;
    assert_problem(&frozen, 503, "UNAVAILABLE");
    assert_eq!(frozen.header("retry-after"), Some("1"));
    // Its slot stays taken while the call runs on: the next store call is refused, not queued.
    let starved = call(&app, get(&format!("/users/{}/balance", Uuid::new_v4()))).await;
    assert_problem(&starved, 503, "UNAVAILABLE");
    // Once the store answers, the call ends and gives its slot back.
    blocker.release();
    let user = Uuid::new_v4();
    let mut answered = call(&app, get(&format!("/users/{user}/balance"))).await;
    for _ in 0..100 {
        if answered.status == 200 {
            break;
        }
        actix_web::rt::time::sleep(StdDuration::from_millis(10)).await;
        answered = call(&app, get(&format!("/users/{user}/balance"))).await;
    }
    assert_eq!(answered.status, 200, "{answered:?}");
}

#[actix_web::test]
async fn a_call_that_was_committing_when_the_store_froze_gets_its_real_outcome_not_a_503() {
    let world = World::new();
    let blocker = Blocker::new();
    let ticketing = scripted(world.ports(), Script::CommitThenBlock(blocker.clone()));
    let state = ApiState::builder(ticketing).store_deadline(StdDuration::from_millis(100)).build();
    let waiting = app(state).await;
    let user = Uuid::new_v4();
    let charge = call(&waiting, charge_req(user, 7, None));
    let thaw = async {
        blocker.wait_until_blocked().await;
        // Well past the deadline: the COMMIT was sent, so the answer waits for the store.
        actix_web::rt::time::sleep(StdDuration::from_millis(300)).await;
        blocker.release();
    };
    let (charge, ()) = futures_util::future::join(charge, thaw).await;
    assert_eq!((charge.status, charge.body["balance"].as_i64()), (200, Some(7)), "{charge:?}");

    // If the store never comes back, the outcome is unknown: 500, never a 503 that may be false.
    let world = World::new();
    let blocker = Blocker::new();
    let ticketing = scripted(world.ports(), Script::CommitThenBlock(blocker.clone()));
    let state = ApiState::builder(ticketing)
        .store_deadline(StdDuration::from_millis(100))
        .commit_wait(StdDuration::from_millis(100))
        .build();
    let frozen = app(state).await;
    let unknown = call(&frozen, charge_req(Uuid::new_v4(), 7, None)).await;
    assert_problem(&unknown, 500, "INTERNAL");
    blocker.release();
}
