//! The HTTP contract, end to end through actix's test service on the in-memory store with a
//! manual clock: every endpoint, every error row, idempotent retries, the hold limit, the rate
//! limit behind trusted proxies, store slots, the operator API, the documents and the page.
//! Admission is driven by calling `Ticketing::admit` directly. Nothing here reads the
//! developer's environment. (Metrics are in `tests/metrics.rs`: the recorder is global, so its
//! counts are checked in a process of their own.)

// Helpers outside `#[test]` fns are test code too: a failed expectation should panic there.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::sync::{mpsc, Arc, Mutex};
use std::time::Duration as StdDuration;

use actix_web::http::Method;
use actix_web::test::TestRequest;
use adapters_http::ApiState;
use adapters_local::poll_cache::{CachedQueue, PollCacheSettings};
use adapters_local::settings_cache::CachedSettings;
use adapters_local::ticker::ManualTicker;
use common::*;
use domain::account::{CreditOutcome, CreditRequest, LedgerEntry, LedgerQuery};
use domain::error::StoreError;
use domain::idempotency::{Claimed, IdempotencyGuard};
use domain::ids::UserId;
use domain::money::Won;
use domain::ports::AccountStore;
use domain::service::{Ports, Ticketing};
use serde_json::{json, Value};
use time::Duration;
use uuid::Uuid;

// ---- the waiting queue ----------------------------------------------------------------------

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

// ---- catalogue ------------------------------------------------------------------------------

#[actix_web::test]
async fn the_catalogue_needs_an_active_token() {
    let world = World::new();
    let app = app(world.state()).await;
    let res = call(&app, get("/concerts")).await;
    assert_problem(&res, 401, "TOKEN_MISSING");
    let waiting = issue(&app, Uuid::new_v4()).await;
    let res = call(&app, get("/concerts").insert_header(bearer(&waiting))).await;
    assert_problem(&res, 403, "TOKEN_NOT_ACTIVE");
    world.admit();
    let res = call(&app, get("/concerts").insert_header(bearer(&waiting))).await;
    assert_eq!(res.status, 200);
    let concerts = res.body.as_array().unwrap();
    assert_eq!(concerts.len(), 1);
    assert_eq!(concerts[0]["id"], json!(world.concert.to_string()));
    assert_eq!(concerts[0]["title"], "Test Concert");

    let res = call(&app, get(&format!("/concerts/{}/schedules", world.concert)).insert_header(bearer(&waiting))).await;
    assert_eq!(res.status, 200);
    let schedules = res.body.as_array().unwrap();
    assert_eq!(schedules.len(), 2);
    assert_eq!(schedules[0]["id"], json!(world.schedule.to_string()));
    assert_eq!(schedules[0]["totalSeats"], 10);
    assert_eq!(schedules[0]["availableSeats"], 10);
    assert!(schedules[0]["startsAt"].as_str().unwrap() < schedules[1]["startsAt"].as_str().unwrap());

    let res = call(&app, get(&format!("/schedules/{}/seats", world.schedule)).insert_header(bearer(&waiting))).await;
    assert_eq!(res.status, 200);
    let seats = res.body.as_array().unwrap();
    assert_eq!(seats.len(), 10);
    assert_eq!(seats[0]["number"], 1);
    assert_eq!(seats[0]["price"], 1000);
    assert_eq!(seats[0]["status"], "AVAILABLE");

    let unknown = Uuid::new_v4();
    let res = call(&app, get(&format!("/concerts/{unknown}/schedules")).insert_header(bearer(&waiting))).await;
    assert_problem(&res, 404, "NOT_FOUND");
    let res = call(&app, get(&format!("/schedules/{unknown}/seats")).insert_header(bearer(&waiting))).await;
    assert_problem(&res, 404, "NOT_FOUND");
    let upper = world.schedule.to_string().to_uppercase();
    for bad in ["nope", upper.as_str(), "00000000000000000000000000000000"] {
        let res = call(&app, get(&format!("/schedules/{bad}/seats")).insert_header(bearer(&waiting))).await;
        assert_problem(&res, 400, "INVALID_REQUEST");
    }
}

// ---- reservations ---------------------------------------------------------------------------

#[actix_web::test]
async fn holding_a_seat_and_reading_it_back() {
    let world = World::new();
    let app = app(world.state()).await;
    let token = active_token(&world, &app, Uuid::new_v4()).await;
    let seat = world.seat(1);
    let res = call(&app, reserve(&token, world.schedule, seat)).await;
    assert_eq!(res.status, 201, "{res:?}");
    let r = res.body.clone();
    assert_eq!(r["status"], "HELD");
    assert_eq!(r["seatNumber"], 1);
    assert_eq!(r["price"], 1000);
    assert_eq!(r["seatId"], json!(seat.to_string()));
    assert!(r["heldUntil"].is_string());

    let res = call(&app, reserve(&token, world.schedule, seat)).await;
    assert_problem(&res, 409, "SEAT_UNAVAILABLE");
    let res = call(&app, reserve(&token, world.other_schedule, seat)).await;
    assert_problem(&res, 404, "NOT_FOUND");
    let res = call(&app, reserve(&token, world.schedule, Uuid::new_v4())).await;
    assert_problem(&res, 404, "NOT_FOUND");

    let id = r["id"].as_str().unwrap();
    let res = call(&app, get(&format!("/reservations/{id}")).insert_header(bearer(&token))).await;
    assert_eq!(res.status, 200);
    assert_eq!(res.body["id"], r["id"]);
    let other = active_token(&world, &app, Uuid::new_v4()).await;
    let res = call(&app, get(&format!("/reservations/{id}")).insert_header(bearer(&other))).await;
    assert_problem(&res, 404, "NOT_FOUND");
    let res = call(&app, get(&format!("/reservations/{}", id.to_uppercase())).insert_header(bearer(&token))).await;
    assert_problem(&res, 400, "INVALID_REQUEST");

    // The hold runs out: the seat is AVAILABLE at once, the reservation EXPIRED.
    world.clock.advance(Duration::seconds(HOLD_SECS));
    let seats = call(&app, get(&format!("/schedules/{}/seats", world.schedule)).insert_header(bearer(&token))).await;
    assert_eq!(seats.body[0]["status"], "AVAILABLE");
    let res = call(&app, get(&format!("/reservations/{id}")).insert_header(bearer(&token))).await;
    assert_eq!(res.body["status"], "EXPIRED");
}

#[actix_web::test]
async fn a_user_holds_at_most_the_limit() {
    let world = World::new();
    let app = app(world.state()).await;
    let token = active_token(&world, &app, Uuid::new_v4()).await;
    for n in 1..=MAX_HOLDS {
        let res = call(&app, reserve(&token, world.schedule, world.seat(n))).await;
        assert_eq!(res.status, 201, "hold {n}: {res:?}");
    }
    let res = call(&app, reserve(&token, world.schedule, world.seat(MAX_HOLDS + 1))).await;
    assert_problem(&res, 409, "HOLD_LIMIT");
    let seats = call(&app, get(&format!("/schedules/{}/seats", world.schedule)).insert_header(bearer(&token))).await;
    assert_eq!(seats.body[(MAX_HOLDS) as usize]["status"], "AVAILABLE", "the refused hold stored nothing");
}

#[actix_web::test]
async fn reservation_bodies_are_strict() {
    let world = World::new();
    let app = app(world.state()).await;
    let token = active_token(&world, &app, Uuid::new_v4()).await;
    let (schedule, seat) = (world.schedule.to_string(), world.seat(1).to_string());
    for body in [
        json!([schedule, seat]),
        json!({"scheduleId": schedule}),
        json!({"scheduleId": schedule, "seatId": seat, "userId": Uuid::new_v4()}),
        json!({"scheduleId": schedule, "seatId": seat.to_uppercase()}),
        json!({"scheduleId": 1, "seatId": seat}),
    ] {
        let res = call(&app, post("/reservations").insert_header(bearer(&token)).set_json(&body)).await;
        assert_problem(&res, 400, "INVALID_REQUEST");
    }
    let res = call(&app, post("/reservations").set_json(json!({"scheduleId": schedule, "seatId": seat}))).await;
    assert_problem(&res, 401, "TOKEN_MISSING");
}

// ---- payments -------------------------------------------------------------------------------

#[actix_web::test]
async fn paying_debits_sells_and_uses_the_token_up() {
    let world = World::new();
    let app = app(world.state()).await;
    let user = Uuid::new_v4();
    let token = active_token(&world, &app, user).await;
    let r1 = hold(&app, &token, world.schedule, world.seat(2)).await;
    let res = call(&app, pay(&token, &r1, None)).await;
    assert_problem(&res, 402, "INSUFFICIENT_BALANCE");
    charge(&app, user, 5000, None).await;
    let res = call(&app, pay(&token, &r1, None)).await;
    assert_eq!(res.status, 201, "{res:?}");
    assert_eq!(res.body["reservationId"], json!(r1));
    assert_eq!(res.body["userId"], json!(user.to_string()));
    assert_eq!(res.body["amount"], 2000);
    assert_eq!(res.body["balance"], 3000);
    assert!(res.header("idempotent-replayed").is_none());

    // The token paid: it is used up.
    let res = call(&app, get("/concerts").insert_header(bearer(&token))).await;
    assert_problem(&res, 401, "TOKEN_EXPIRED");
    let res = call(&app, pay(&token, &r1, None)).await;
    assert_problem(&res, 401, "TOKEN_EXPIRED");

    let token = active_token(&world, &app, user).await;
    let res = call(&app, pay(&token, &r1, None)).await;
    assert_problem(&res, 409, "ALREADY_PAID");
    let seats = call(&app, get(&format!("/schedules/{}/seats", world.schedule)).insert_header(bearer(&token))).await;
    assert_eq!(seats.body[1]["status"], "SOLD");
    let res = call(&app, pay(&token, &Uuid::new_v4().to_string(), None)).await;
    assert_problem(&res, 404, "NOT_FOUND");

    let r2 = hold(&app, &token, world.schedule, world.seat(3)).await;
    world.clock.advance(Duration::seconds(HOLD_SECS));
    let res = call(&app, pay(&token, &r2, None)).await;
    assert_problem(&res, 409, "HOLD_EXPIRED");

    let res = call(&app, pay(&"b".repeat(64), &r2, None)).await;
    assert_problem(&res, 401, "TOKEN_INVALID");
    let waiting = issue(&app, Uuid::new_v4()).await;
    let res = call(&app, pay(&waiting, &r2, None)).await;
    assert_problem(&res, 403, "TOKEN_NOT_ACTIVE");
}

// ---- idempotent retries ---------------------------------------------------------------------

#[actix_web::test]
async fn a_keyed_charge_is_replayed_byte_for_byte_and_applied_once() {
    let world = World::new();
    let app = app(world.state()).await;
    let user = Uuid::new_v4();
    let first = call(&app, charge_req(user, 700, Some("charge-1"))).await;
    assert_eq!(first.status, 200);
    assert!(first.header("idempotent-replayed").is_none());
    let again = call(&app, charge_req(user, 700, Some("charge-1"))).await;
    assert_eq!(again.status, 200);
    assert_eq!(again.raw, first.raw, "the replay is the first answer's bytes");
    assert_eq!(again.header("idempotent-replayed"), Some("true"));
    assert_eq!(again.header("content-type"), Some("application/json"));
    assert_eq!(balance(&app, user).await, 700, "applied once");

    let reused = call(&app, charge_req(user, 800, Some("charge-1"))).await;
    assert_problem(&reused, 422, "IDEMPOTENCY_KEY_REUSED");
    assert_eq!(balance(&app, user).await, 700);

    // The key is scoped to the user.
    let other = Uuid::new_v4();
    let res = call(&app, charge_req(other, 800, Some("charge-1"))).await;
    assert_eq!(res.status, 200);
    assert!(res.header("idempotent-replayed").is_none());

    // Without a key: the same serializer.
    let plain = call(&app, charge_req(user, 1, None)).await;
    assert_eq!(plain.raw, format!(r#"{{"userId":"{user}","balance":701}}"#));
    assert_eq!(first.raw, format!(r#"{{"userId":"{user}","balance":700}}"#));

    for key in ["", "a b", &"k".repeat(256), "키"] {
        let res = call(
            &app,
            post(&format!("/users/{user}/balance/charge"))
                .insert_header(("Idempotency-Key", key))
                .set_json(json!({"amount": 5})),
        )
        .await;
        assert_problem(&res, 400, "INVALID_REQUEST");
    }
    assert_eq!(balance(&app, user).await, 701);
}

#[actix_web::test]
async fn a_refused_request_records_nothing_so_its_retry_runs() {
    let world = World::new();
    let app = app(world.state()).await;
    let user = Uuid::new_v4();
    let token = active_token(&world, &app, user).await;
    let r = hold(&app, &token, world.schedule, world.seat(4)).await;
    let refused = call(&app, pay(&token, &r, Some("pay-1"))).await;
    assert_problem(&refused, 402, "INSUFFICIENT_BALANCE");
    charge(&app, user, 4000, None).await;
    let paid = call(&app, pay(&token, &r, Some("pay-1"))).await;
    assert_eq!(paid.status, 201, "the retry ran: {paid:?}");
    assert!(paid.header("idempotent-replayed").is_none());

    // A charge refused for the balance limit records nothing either.
    let rich = Uuid::new_v4();
    for _ in 0..10 {
        charge(&app, rich, 1_000_000_000, None).await;
    }
    let res = call(&app, charge_req(rich, 1, Some("top-up"))).await;
    assert_problem(&res, 409, "BALANCE_LIMIT");
    let res = call(&app, charge_req(rich, 1, Some("top-up"))).await;
    assert_problem(&res, 409, "BALANCE_LIMIT");
    assert!(res.header("idempotent-replayed").is_none());
}

#[actix_web::test]
async fn a_payment_replay_is_answered_after_its_token_was_used_up() {
    let world = World::new();
    let app = app(world.state()).await;
    let user = Uuid::new_v4();
    charge(&app, user, 10_000, None).await;
    let token = active_token(&world, &app, user).await;
    let r = hold(&app, &token, world.schedule, world.seat(5)).await;
    let first = call(&app, pay(&token, &r, Some("pay-once"))).await;
    assert_eq!(first.status, 201);
    let again = call(&app, pay(&token, &r, Some("pay-once"))).await;
    assert_eq!(again.status, 201, "{again:?}");
    assert_eq!(again.raw, first.raw);
    assert_eq!(again.header("idempotent-replayed"), Some("true"));
    assert_eq!(balance(&app, user).await, 5000, "paid once");
    // The same key for another reservation.
    let token = active_token(&world, &app, user).await;
    let r2 = hold(&app, &token, world.schedule, world.seat(2)).await;
    let res = call(&app, pay(&token, &r2, Some("pay-once"))).await;
    assert_problem(&res, 422, "IDEMPOTENCY_KEY_REUSED");
    let res = call(&app, pay(&token, &r2, None)).await;
    assert_eq!(res.status, 201, "the token was not used by the refused request");
}

#[actix_web::test]
async fn a_key_in_flight_is_answered_409_with_retry_after() {
    let world = World::new();
    let app = app(ApiState::builder(scripted(world.ports(), Script::KeyedInFlight)).build()).await;
    let res = call(&app, charge_req(Uuid::new_v4(), 5, Some("busy"))).await;
    assert_problem(&res, 409, "IDEMPOTENCY_KEY_IN_FLIGHT");
    assert_eq!(res.header("retry-after"), Some("1"));
}

// ---- balance --------------------------------------------------------------------------------

#[actix_web::test]
async fn balances_and_their_history_page_newest_first() {
    let world = World::new();
    let app = app(world.state()).await;
    let user = Uuid::new_v4();
    assert_eq!(balance(&app, user).await, 0);
    for amount in [1000, 2000, 3000] {
        charge(&app, user, amount, None).await;
    }
    let token = active_token(&world, &app, user).await;
    let r = hold(&app, &token, world.schedule, world.seat(1)).await;
    assert_eq!(call(&app, pay(&token, &r, None)).await.status, 201);

    let page = call(&app, get(&format!("/users/{user}/balance/history?limit=2"))).await;
    assert_eq!(page.status, 200);
    let entries = page.body["entries"].as_array().unwrap();
    assert_eq!(entries.len(), 2);
    assert_eq!(entries[0]["kind"], "PAYMENT");
    assert_eq!(entries[0]["amount"], -1000);
    assert_eq!(entries[0]["balanceAfter"], 5000);
    assert_eq!(entries[0]["reservationId"], json!(r));
    assert_eq!(entries[1]["kind"], "CHARGE");
    assert_eq!(entries[1]["amount"], 3000);
    assert_eq!(entries[1]["reservationId"], Value::Null);
    let next = page.body["nextBefore"].as_str().unwrap().to_owned();
    assert_eq!(json!(next), entries[1]["id"]);
    let rest = call(&app, get(&format!("/users/{user}/balance/history?limit=2&before={next}"))).await;
    let entries = rest.body["entries"].as_array().unwrap();
    assert_eq!(entries.iter().map(|e| e["amount"].as_i64().unwrap()).collect::<Vec<_>>(), vec![2000, 1000]);
    assert_eq!(rest.body["nextBefore"], Value::Null);
    let all = call(&app, get(&format!("/users/{user}/balance/history"))).await;
    assert_eq!(all.body["entries"].as_array().unwrap().len(), 4);

    let stranger = Uuid::new_v4();
    for query in [
        "limit=0".to_owned(),
        "limit=101".to_owned(),
        "limit=abc".to_owned(),
        "limit=%2B5".to_owned(),
        "limit=".to_owned(),
        "before=nope".to_owned(),
        format!("before={}", next.to_uppercase()),
        format!("before={}", Uuid::new_v4()),
    ] {
        let res = call(&app, get(&format!("/users/{user}/balance/history?{query}"))).await;
        assert_problem(&res, 400, "INVALID_REQUEST");
    }
    let res = call(&app, get(&format!("/users/{stranger}/balance/history?before={next}"))).await;
    assert_problem(&res, 400, "INVALID_REQUEST");
    let res = call(&app, get("/users/nope/balance")).await;
    assert_problem(&res, 400, "INVALID_REQUEST");
}

#[actix_web::test]
async fn charges_validate_their_amount() {
    let world = World::new();
    let app = app(world.state()).await;
    let user = Uuid::new_v4();
    for amount in [json!(0), json!(-5), json!(1_000_000_001), json!(1.5), json!("100"), json!(null)] {
        let res =
            call(&app, post(&format!("/users/{user}/balance/charge")).set_json(json!({ "amount": amount }))).await;
        assert_problem(&res, 400, "INVALID_AMOUNT");
    }
    let res = call(&app, post(&format!("/users/{user}/balance/charge")).set_json(json!({}))).await;
    assert_problem(&res, 400, "INVALID_REQUEST");
    let mut rich: i64 = 0;
    while rich < 10_000_000_000 {
        charge(&app, user, 1_000_000_000, None).await;
        rich += 1_000_000_000;
    }
    let res = call(&app, charge_req(user, 1, None)).await;
    assert_problem(&res, 409, "BALANCE_LIMIT");
    assert_eq!(balance(&app, user).await, 10_000_000_000);
}

/// Issue 21: a field given twice is read neither as its first nor as its last value, on the
/// public and the operator API, and a refused body records nothing under its key.
#[actix_web::test]
async fn a_body_that_names_a_field_twice_is_refused_and_changes_nothing() {
    let world = World::new();
    let app = app(world.state()).await;
    let user = Uuid::new_v4();
    let raw = |body: &'static str, key: Option<&str>| {
        let mut req = post(&format!("/users/{user}/balance/charge")).insert_header(json_type()).set_payload(body);
        if let Some(key) = key {
            req = req.insert_header(("Idempotency-Key", key.to_owned()));
        }
        req
    };
    let res = call(&app, raw(r#"{"amount":1,"amount":2}"#, None)).await;
    assert_problem(&res, 400, "INVALID_REQUEST");
    assert!(res.body["detail"].as_str().unwrap().contains("`amount` is given more than once"), "{res:?}");
    assert_problem(&call(&app, raw(r#"{"amount":5,"amount":7}"#, Some("k"))).await, 400, "INVALID_REQUEST");
    assert_eq!(balance(&app, user).await, 0);
    // The key recorded nothing: the same key with one amount runs, and is then replayed.
    assert_eq!(call(&app, raw(r#"{"amount":7}"#, Some("k"))).await.status, 200);
    let replay = call(&app, raw(r#"{"amount":7}"#, Some("k"))).await;
    assert_eq!(replay.header("idempotent-replayed"), Some("true"));
    assert_eq!(balance(&app, user).await, 7);

    let token = active_token(&world, &app, Uuid::new_v4()).await;
    let body =
        format!(r#"{{"scheduleId":"{}","seatId":"{}","seatId":"{}"}}"#, world.schedule, world.seat(1), world.seat(2));
    let res =
        call(&app, post("/reservations").insert_header(bearer(&token)).insert_header(json_type()).set_payload(body))
            .await;
    assert_problem(&res, 400, "INVALID_REQUEST");

    let before = call(&app, get("/admin/queue").insert_header(bearer(ADMIN))).await;
    let res = call(
        &app,
        patch("/admin/queue")
            .insert_header(bearer(ADMIN))
            .insert_header(json_type())
            .set_payload(r#"{"admitBatch":5,"admitBatch":6}"#),
    )
    .await;
    assert_problem(&res, 400, "INVALID_REQUEST");
    let seats = r#"{"title":"t","schedules":[{"startsAt":"2099-01-01T00:00:00Z","seats":[{"number":1,"price":5,"number":2}]}]}"#;
    let res =
        call(&app, post("/admin/concerts").insert_header(bearer(ADMIN)).insert_header(json_type()).set_payload(seats))
            .await;
    assert_problem(&res, 400, "INVALID_REQUEST");
    let state = call(&app, get("/admin/queue").insert_header(bearer(ADMIN))).await;
    assert_eq!(state.body["admitBatch"], before.body["admitBatch"], "nothing changed: {state:?}");
}

/// `Authorization` is read the same way for queue tokens and the operator token: the scheme
/// case-insensitive (RFC 9110 11.1), one or more spaces before the credential (`1*SP`), and
/// the spaces around the field's value not part of it (RFC 9110 5.5).
#[actix_web::test]
async fn bearer_credentials_are_read_alike_for_both_realms() {
    let world = World::new();
    let app = app(world.state()).await;
    let token = issue(&app, Uuid::new_v4()).await;
    for form in ["Bearer {}", "bearer {}", "BEARER  {}", "Bearer {} "] {
        let queue = form.replace("{}", &token);
        let res = call(&app, get("/queue/token").insert_header(("Authorization", queue.clone()))).await;
        assert_eq!(res.status, 200, "{queue:?}: {res:?}");
        let admin = form.replace("{}", ADMIN);
        let res = call(&app, get("/admin/queue").insert_header(("Authorization", admin.clone()))).await;
        assert_eq!(res.status, 200, "{admin:?}: {res:?}");
    }
    for form in ["Bearer", "Bearer ", "Basic {}", "Bearer\t{}", "{}", "Bearer{}"] {
        for (path, secret) in [("/queue/token", token.as_str()), ("/admin/queue", ADMIN)] {
            let value = form.replace("{}", secret);
            let res = call(&app, get(path).insert_header(("Authorization", value.clone()))).await;
            assert_problem(&res, 401, "TOKEN_MISSING");
        }
    }
}

// ---- store failures -------------------------------------------------------------------------

#[actix_web::test]
async fn a_store_that_fails_gets_503_or_500_and_leaks_nothing() {
    let world = World::new();
    let app = app(world.state()).await;
    let user = Uuid::new_v4();
    world.store.set_failure(Some(StoreError::Unavailable("connection refused to 10.1.2.3".into())));
    let res = call(&app, get(&format!("/users/{user}/balance"))).await;
    assert_problem(&res, 503, "UNAVAILABLE");
    assert_eq!(res.header("retry-after"), Some("1"));
    assert!(!res.raw.contains("10.1.2.3"));
    let res = call(&app, get("/health/ready")).await;
    assert_problem(&res, 503, "UNAVAILABLE");
    let res = call(&app, get("/health/live")).await;
    assert_eq!(res.status, 200);
    world.store.set_failure(Some(StoreError::Timeout("canceling statement due to lock timeout".into())));
    let res = call(&app, charge_req(user, 5, Some("k"))).await;
    assert_problem(&res, 503, "UNAVAILABLE");
    world.store.set_failure(Some(StoreError::Internal("relation \"accounts\" does not exist".into())));
    let res = call(&app, get(&format!("/users/{user}/balance"))).await;
    assert_problem(&res, 500, "INTERNAL");
    assert!(!res.raw.contains("accounts"));
    world.store.set_failure(None);
    let res = call(&app, charge_req(user, 5, Some("k"))).await;
    assert_eq!(res.status, 200, "the 503 recorded nothing: the retry runs");
    assert!(res.header("idempotent-replayed").is_none());
    assert_eq!(call(&app, get("/health/ready")).await.status, 200);
}

#[actix_web::test]
async fn store_calls_wait_for_the_gate_and_start_nothing_while_it_is_closed() {
    let world = World::new();
    let open = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let app = app(world.builder().store_gate(open.clone()).build()).await;
    let user = Uuid::new_v4();
    let res = call(&app, charge_req(user, 5, Some("gate"))).await;
    assert_problem(&res, 503, "UNAVAILABLE");
    assert_eq!(call(&app, get("/health/live")).await.status, 200, "liveness needs no store");
    open.store(true, std::sync::atomic::Ordering::Release);
    let res = call(&app, charge_req(user, 5, Some("gate"))).await;
    assert_eq!((res.status, res.body["balance"].as_i64()), (200, Some(5)), "nothing was started while closed");
}

// ---- HTTP-level errors ----------------------------------------------------------------------

#[actix_web::test]
async fn every_http_level_rejection_is_problem_json() {
    let world = World::new();
    let app = app(world.state()).await;
    let res = call(&app, get("/nowhere")).await;
    assert_problem(&res, 404, "NOT_FOUND");
    let res = call(&app, TestRequest::default().method(Method::DELETE).uri("/concerts")).await;
    assert_problem(&res, 405, "METHOD_NOT_ALLOWED");
    assert_eq!(res.header("allow"), Some("GET"));
    let big = format!(r#"{{"userId": "{}", "pad": "{}"}}"#, Uuid::new_v4(), "x".repeat(17 * 1024));
    let res = call(&app, post("/queue/tokens").insert_header(json_type()).set_payload(big.clone())).await;
    assert_problem(&res, 413, "PAYLOAD_TOO_LARGE");
    // Declared too large before anything else: no token needed to be told.
    let res = call(&app, post("/payments").insert_header(json_type()).set_payload(big)).await;
    assert_problem(&res, 413, "PAYLOAD_TOO_LARGE");
    let res = call(&app, get(&format!("/users/{}/balance/history?limit=1&limit=2", Uuid::new_v4()))).await;
    assert_problem(&res, 400, "INVALID_REQUEST");
}

#[actix_web::test]
async fn problem_types_are_documents() {
    let world = World::new();
    let app = app(world.state()).await;
    let res = call(&app, get("/nowhere")).await;
    let type_uri = res.body["type"].as_str().unwrap().to_owned();
    assert_eq!(type_uri, "/problems/not-found");
    let doc = call(&app, get(&type_uri)).await;
    assert_eq!(doc.status, 200);
    assert!(doc.header("content-type").unwrap().starts_with("text/html"));
    assert!(doc.raw.contains("NOT_FOUND") && doc.raw.contains("Not found"));
    for code in ["hold-limit", "idempotency-key-in-flight", "rate-limited", "unavailable", "request-timeout"] {
        assert_eq!(call(&app, get(&format!("/problems/{code}"))).await.status, 200, "{code}");
    }
    assert_problem(&call(&app, get("/problems/no-such-thing")).await, 404, "NOT_FOUND");
    assert_problem(&call(&app, get("/problems/HOLD-LIMIT")).await, 404, "NOT_FOUND");
}

// ---- rate limit -----------------------------------------------------------------------------

#[actix_web::test]
async fn issue_is_limited_per_client_address_whatever_the_answer() {
    let world = World::new();
    let app = app(world.builder().issue_rate_per_min(2).build()).await;
    let from = |peer: &str| post("/queue/tokens").peer_addr(peer.parse().unwrap());
    let res = call(&app, from("198.51.100.1:4000").insert_header(json_type()).set_payload("{")).await;
    assert_problem(&res, 400, "INVALID_REQUEST");
    let res = call(&app, from("198.51.100.1:4001").set_json(json!({"userId": Uuid::new_v4()}))).await;
    assert_eq!(res.status, 201);
    let res = call(&app, from("198.51.100.1:4002").set_json(json!({"userId": Uuid::new_v4()}))).await;
    assert_problem(&res, 429, "RATE_LIMITED");
    let wait: u64 = res.header("retry-after").unwrap().parse().unwrap();
    assert!((1..=60).contains(&wait), "{wait}");
    assert_eq!(world.ticketing.queue_state().unwrap().stats.issued_through, 1, "nothing stored");
    let res = call(&app, from("198.51.100.2:4000").set_json(json!({"userId": Uuid::new_v4()}))).await;
    assert_eq!(res.status, 201, "another address has its own allowance");
    // Forwarded-for from an untrusted peer changes nothing.
    let res = call(
        &app,
        from("198.51.100.1:4003")
            .insert_header(("X-Forwarded-For", "203.0.113.77"))
            .set_json(json!({"userId": Uuid::new_v4()})),
    )
    .await;
    assert_problem(&res, 429, "RATE_LIMITED");
    // Other paths are not limited.
    let res = call(&app, get("/health/live").peer_addr("198.51.100.1:4004".parse().unwrap())).await;
    assert_eq!(res.status, 200);
}

#[actix_web::test]
async fn behind_trusted_proxies_the_forwarded_client_is_limited() {
    let world = World::new();
    let proxies = adapters_http::TrustedProxies::parse_list("10.0.0.0/8").unwrap();
    let app = app(world.builder().issue_rate_per_min(1).trusted_proxies(proxies).build()).await;
    let via = |xff: &str| {
        post("/queue/tokens")
            .peer_addr("10.0.0.1:5000".parse().unwrap())
            .insert_header(("X-Forwarded-For", xff.to_owned()))
            .set_json(json!({"userId": Uuid::new_v4()}))
    };
    assert_eq!(call(&app, via("203.0.113.5")).await.status, 201);
    assert_problem(&call(&app, via("203.0.113.5")).await, 429, "RATE_LIMITED");
    // The right-most untrusted entry is the client, whatever the client wrote to its left.
    assert_problem(&call(&app, via("1.1.1.1, 203.0.113.5, 10.0.0.9")).await, 429, "RATE_LIMITED");
    assert_eq!(call(&app, via("203.0.113.5, 203.0.113.6")).await.status, 201);
    // No header: the proxy itself is the client.
    let bare =
        post("/queue/tokens").peer_addr("10.0.0.1:5000".parse().unwrap()).set_json(json!({"userId": Uuid::new_v4()}));
    assert_eq!(call(&app, bare).await.status, 201);
}

#[actix_web::test]
async fn the_rate_limit_tracks_a_bounded_number_of_addresses() {
    let world = World::new();
    let app = app(world.builder().issue_rate_per_min(1).issue_rate_keys(3).build()).await;
    let from = |n: u8| {
        post("/queue/tokens")
            .peer_addr(format!("192.0.2.{n}:1000").parse().unwrap())
            .set_json(json!({"userId": Uuid::new_v4()}))
    };
    for n in 1..=3 {
        assert_eq!(call(&app, from(n)).await.status, 201);
    }
    // The table is full of fresh entries: newcomers share one allowance, and never get past it.
    assert_eq!(call(&app, from(100)).await.status, 201);
    assert_problem(&call(&app, from(101)).await, 429, "RATE_LIMITED");
    assert_problem(&call(&app, from(102)).await, 429, "RATE_LIMITED");
    // The tracked addresses keep their own.
    assert_problem(&call(&app, from(1)).await, 429, "RATE_LIMITED");
}

// ---- operator API ---------------------------------------------------------------------------

#[actix_web::test]
async fn the_operator_api_is_off_without_a_token() {
    let world = World::new();
    let app = app(world.builder().admin_token(None).build()).await;
    for (method, path) in [
        (Method::GET, "/admin/queue".to_owned()),
        (Method::PATCH, "/admin/queue".to_owned()),
        (Method::POST, "/admin/concerts".to_owned()),
        (Method::GET, format!("/admin/concerts/{}/sales", world.concert)),
    ] {
        let res = call(&app, TestRequest::default().method(method).uri(&path).insert_header(bearer(ADMIN))).await;
        assert_problem(&res, 404, "NOT_FOUND");
    }
    // Metrics are open then (and 404 here only because no recorder was given).
    assert_problem(&call(&app, get("/metrics")).await, 404, "NOT_FOUND");
}

#[actix_web::test]
async fn the_operator_api_needs_the_operator_token() {
    let world = World::new();
    let app = app(world.state()).await;
    let res = call(&app, get("/admin/queue")).await;
    assert_problem(&res, 401, "TOKEN_MISSING");
    assert!(res.header("www-authenticate").unwrap().starts_with("Bearer"));
    let res = call(&app, get("/admin/queue").insert_header(bearer("wrong"))).await;
    assert_problem(&res, 401, "TOKEN_INVALID");
    assert!(res.header("www-authenticate").is_some());
    let queue_token = active_token(&world, &app, Uuid::new_v4()).await;
    let res = call(&app, get("/admin/queue").insert_header(bearer(&queue_token))).await;
    assert_problem(&res, 401, "TOKEN_INVALID");
    let res = call(&app, get("/metrics").insert_header(bearer(&queue_token))).await;
    assert_problem(&res, 401, "TOKEN_INVALID");
    let res = call(&app, get("/admin/queue").insert_header(bearer(ADMIN))).await;
    assert_eq!(res.status, 200);
    let res =
        call(&app, TestRequest::default().method(Method::DELETE).uri("/admin/queue").insert_header(bearer(ADMIN)))
            .await;
    assert_problem(&res, 405, "METHOD_NOT_ALLOWED");
    assert_eq!(res.header("allow"), Some("GET, PATCH"));
}

#[actix_web::test]
async fn operators_read_and_change_the_waiting_room() {
    let world = World::new();
    let app = app(world.state()).await;
    let admin = |req: TestRequest| req.insert_header(bearer(ADMIN));
    let a = Uuid::new_v4();
    let token = issue(&app, a).await;
    issue(&app, Uuid::new_v4()).await;
    world.admit();
    let res = call(&app, admin(get("/admin/queue"))).await;
    assert_eq!(res.status, 200);
    let q = &res.body;
    assert_eq!(q["waiting"], 0);
    assert_eq!(q["active"], 2);
    assert_eq!(q["issuedThrough"], 2);
    assert_eq!(q["admittedThrough"], 2);
    assert!(q["lastAdmissionAt"].is_string());
    assert!(q["nextAdmissionAt"].is_string());
    assert_eq!(q["paused"], false);
    assert_eq!(q["admitBatch"], 100);
    assert_eq!(q["admitIntervalSecs"], 1);
    assert_eq!(q["activeTtlSecs"], TTL_SECS);
    assert_eq!(q["maxActive"], Value::Null);

    let res = call(&app, admin(patch("/admin/queue")).set_json(json!({"paused": true, "maxActive": 5}))).await;
    assert_eq!(res.status, 200, "{res:?}");
    assert_eq!(res.body["paused"], true);
    assert_eq!(res.body["maxActive"], 5);
    assert_eq!(res.body["nextAdmissionAt"], Value::Null);
    let waiting = issue(&app, Uuid::new_v4()).await;
    let polled = call(&app, get("/queue/token").insert_header(bearer(&waiting))).await;
    assert_eq!(polled.body["paused"], true, "token bodies carry the pause");
    assert_eq!(polled.body["pollAfterSecs"], 20);
    world.admit();
    let polled = call(&app, get("/queue/token").insert_header(bearer(&waiting))).await;
    assert_eq!(polled.body["status"], "WAITING", "paused: nobody admitted");
    let res = call(&app, admin(get("/admin/queue"))).await;
    assert_eq!(res.body["paused"], true);
    assert_eq!(res.body["waiting"], 1);

    let res = call(
        &app,
        admin(patch("/admin/queue")).set_json(
            json!({"paused": false, "maxActive": null, "admitBatch": 7, "admitIntervalSecs": 30, "activeTtlSecs": 60}),
        ),
    )
    .await;
    assert_eq!(res.status, 200);
    assert_eq!(res.body["maxActive"], Value::Null, "null lifts the cap");
    assert_eq!(res.body["admitBatch"], 7);
    assert_eq!(res.body["admitIntervalSecs"], 30);
    assert_eq!(res.body["activeTtlSecs"], 60);
    let polled = call(&app, get("/queue/token").insert_header(bearer(&token))).await;
    assert_eq!(polled.body["paused"], false);

    let before = call(&app, admin(get("/admin/queue"))).await.body;
    for body in [
        json!({}),
        json!({"admitBatch": 0}),
        json!({"admitBatch": 100_001}),
        json!({"admitIntervalSecs": 0}),
        json!({"activeTtlSecs": 9}),
        json!({"maxActive": 0}),
        json!({"paused": "yes"}),
        json!({"admitBatch": 1.5}),
        json!({"paused": true, "color": "red"}),
        json!([true]),
    ] {
        let res = call(&app, admin(patch("/admin/queue")).set_json(&body)).await;
        assert_problem(&res, 400, "INVALID_REQUEST");
    }
    let after = call(&app, admin(get("/admin/queue"))).await.body;
    assert_eq!(before["paused"], after["paused"]);
    assert_eq!(before["admitBatch"], after["admitBatch"], "nothing stored on 400");
}

#[actix_web::test]
async fn operators_create_concerts_and_read_sales() {
    let world = World::new();
    let app = app(world.state()).await;
    let admin = |req: TestRequest| req.insert_header(bearer(ADMIN));
    let future = |days: i64| rfc3339(world.now() + Duration::days(days));
    let body = json!({
        "title": "Midsummer", "artist": "The Band", "venue": "Hall",
        "schedules": [{"startsAt": future(3), "seats": [{"number": 2, "price": 500}, {"number": 1, "price": 700}]}]
    });
    let res = call(&app, admin(post("/admin/concerts")).set_json(&body)).await;
    assert_eq!(res.status, 201, "{res:?}");
    let concert = res.body["id"].as_str().unwrap().to_owned();
    assert_eq!(res.body["title"], "Midsummer");
    assert_eq!(res.body["schedules"][0]["totalSeats"], 2);
    assert_eq!(res.body["schedules"][0]["concertId"], json!(concert));

    let res = call(
        &app,
        admin(post(&format!("/admin/concerts/{concert}/schedules")))
            .set_json(json!({"startsAt": future(4), "seats": [{"number": 1, "price": 900}]})),
    )
    .await;
    assert_eq!(res.status, 201, "{res:?}");
    assert_eq!(res.body["totalSeats"], 1);
    let res = call(
        &app,
        admin(post(&format!("/admin/concerts/{}/schedules", Uuid::new_v4())))
            .set_json(json!({"startsAt": future(4), "seats": [{"number": 1, "price": 900}]})),
    )
    .await;
    assert_problem(&res, 404, "NOT_FOUND");
    let res = call(
        &app,
        admin(post("/admin/concerts/NOPE/schedules"))
            .set_json(json!({"startsAt": future(4), "seats": [{"number": 1, "price": 900}]})),
    )
    .await;
    assert_problem(&res, 400, "INVALID_REQUEST");

    let token = active_token(&world, &app, Uuid::new_v4()).await;
    let count =
        || async { call(&app, get("/concerts").insert_header(bearer(&token))).await.body.as_array().unwrap().len() };
    assert_eq!(count().await, 2);
    for bad in [
        json!({"title": "", "schedules": []}),
        json!({"title": "x".repeat(201)}),
        json!({"title": "Past", "schedules": [{"startsAt": rfc3339(world.now() - Duration::days(1)), "seats": [{"number": 1, "price": 1}]}]}),
        json!({"title": "Twice", "schedules": [{"startsAt": future(2), "seats": [{"number": 1, "price": 1}, {"number": 1, "price": 2}]}]}),
        json!({"title": "Free", "schedules": [{"startsAt": future(2), "seats": [{"number": 1, "price": 0}]}]}),
        json!({"title": "Empty", "schedules": [{"startsAt": future(2), "seats": []}]}),
        json!({"title": "When", "schedules": [{"startsAt": "tomorrow", "seats": [{"number": 1, "price": 1}]}]}),
        json!({"title": "Extra", "genre": "rock"}),
        json!({"schedules": []}),
    ] {
        let res = call(&app, admin(post("/admin/concerts")).set_json(&bad)).await;
        assert_problem(&res, 400, "INVALID_REQUEST");
    }
    assert_eq!(count().await, 2, "nothing stored on 400");

    // Sales after one hold and one payment of the test concert.
    let buyer = Uuid::new_v4();
    charge(&app, buyer, 10_000, None).await;
    let t = active_token(&world, &app, buyer).await;
    let r = hold(&app, &t, world.schedule, world.seat(3)).await;
    assert_eq!(call(&app, pay(&t, &r, None)).await.status, 201);
    let t = active_token(&world, &app, buyer).await;
    hold(&app, &t, world.schedule, world.seat(4)).await;
    let res = call(&app, admin(get(&format!("/admin/concerts/{}/sales", world.concert)))).await;
    assert_eq!(res.status, 200);
    let row = &res.body[0];
    assert_eq!(row["scheduleId"], json!(world.schedule.to_string()));
    assert_eq!((row["totalSeats"].as_i64(), row["sold"].as_i64(), row["held"].as_i64()), (Some(10), Some(1), Some(1)));
    assert_eq!(row["available"], 8);
    assert_eq!(row["revenue"], 3000);
    let res = call(&app, admin(get(&format!("/admin/concerts/{}/sales", Uuid::new_v4())))).await;
    assert_problem(&res, 404, "NOT_FOUND");
}

#[actix_web::test]
async fn admin_bodies_may_be_larger_than_public_ones() {
    let world = World::new();
    let app = app(world.state()).await;
    let seats: Vec<Value> = (1..=3000).map(|n| json!({"number": n, "price": 1000})).collect();
    let body =
        json!({"title": "Big", "schedules": [{"startsAt": rfc3339(world.now() + Duration::days(5)), "seats": seats}]});
    assert!(body.to_string().len() > adapters_http::BODY_LIMIT);
    let res = call(&app, post("/admin/concerts").insert_header(bearer(ADMIN)).set_json(&body)).await;
    assert_eq!(res.status, 201, "{:?}", res.body);
    let huge = "x".repeat(adapters_http::ADMIN_BODY_LIMIT + 1);
    let res =
        call(&app, post("/admin/concerts").insert_header(bearer(ADMIN)).insert_header(json_type()).set_payload(huge))
            .await;
    assert_problem(&res, 413, "PAYLOAD_TOO_LARGE");
}

// ---- documents and the page -----------------------------------------------------------------

#[actix_web::test]
async fn the_page_the_docs_and_the_openapi_document_are_served() {
    let world = World::new();
    let app = app(world.state()).await;
    let page = call(&app, get("/")).await;
    assert_eq!(page.status, 200);
    for path in ["/", "/health/live", "/health/ready"] {
        let head = call(&app, TestRequest::default().method(Method::HEAD).uri(path)).await;
        assert_eq!(head.status, 200, "HEAD {path}");
    }
    assert_eq!(page.header("content-type"), Some("text/html; charset=utf-8"));
    let csp = page.header("content-security-policy").unwrap().to_owned();
    assert!(csp.contains("default-src 'self'") && !csp.contains("unsafe") && !csp.contains("http"), "{csp}");
    let script = call(&app, get("/assets/app.js")).await;
    assert_eq!(script.status, 200);
    assert_eq!(script.header("content-type"), Some("text/javascript; charset=utf-8"));
    let style = call(&app, get("/assets/style.css")).await;
    assert_eq!(style.header("content-type"), Some("text/css; charset=utf-8"));
    assert_problem(&call(&app, get("/assets/nope.js")).await, 404, "NOT_FOUND");
    assert_problem(&call(&app, get("/assets/..%2FCargo.toml")).await, 404, "NOT_FOUND");

    for path in ["/docs", "/docs/"] {
        let docs = call(&app, get(path)).await;
        assert_eq!(docs.status, 200, "{path}");
        assert!(docs.header("content-type").unwrap().starts_with("text/html"));
        assert!(docs.raw.contains("<base href=\"/docs/\">"));
    }
    let init = call(&app, get("/docs/swagger-initializer.js")).await;
    assert_eq!(init.status, 200);
    assert!(init.raw.contains("/openapi.json"));
    assert_eq!(call(&app, get("/docs/swagger-ui.css")).await.status, 200);

    let doc = call(&app, get("/openapi.json")).await;
    assert_eq!(doc.status, 200);
    let paths = doc.body["paths"].as_object().unwrap();
    for path in [
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
        "/openapi.json",
        "/metrics",
        "/docs",
        "/docs/{file}",
        "/problems/{slug}",
        "/",
        "/assets/{file}",
        "/admin/queue",
        "/admin/concerts",
        "/admin/concerts/{concertId}/schedules",
        "/admin/concerts/{concertId}/sales",
    ] {
        assert!(paths.contains_key(path), "{path} missing from the OpenAPI document");
    }
    assert!(paths["/admin/queue"].get("patch").is_some());
    assert_eq!(doc.body["servers"][0]["url"], "/");
    let pay = &paths["/payments"]["post"]["responses"];
    assert!(pay["201"]["headers"].get("Idempotent-Replayed").is_some());
    assert!(pay["503"]["headers"].get("Retry-After").is_some());
    assert!(pay["409"]["headers"].get("Retry-After").is_some(), "IDEMPOTENCY_KEY_IN_FLIGHT");
    assert!(pay["401"]["headers"].get("WWW-Authenticate").is_some());
    assert!(pay["422"]["content"]["application/problem+json"]["examples"].get("IDEMPOTENCY_KEY_REUSED").is_some());
    assert!(paths["/queue/tokens"]["post"]["responses"]["429"].is_object());
    let reserve = &paths["/reservations"]["post"]["responses"]["409"]["description"];
    assert!(reserve.as_str().unwrap().contains("HOLD_LIMIT"));
    let status = &doc.body["components"]["schemas"]["TokenResponse"]["properties"]["status"]["enum"];
    assert_eq!(status, &json!(["WAITING", "ACTIVE", "EXPIRED"]));
}

// ---- test doubles ---------------------------------------------------------------------------

/// What the test's account store does besides passing each call on to the memory store.
enum Script {
    /// Every keyed credit finds a concurrent claimer.
    KeyedInFlight,
    /// The first `balance` call blocks until released.
    BlockBalance(Blocker),
    /// The first credit marks its commit point, then blocks until released (a COMMIT sent to a
    /// store that froze before answering).
    CommitThenBlock(Blocker),
}

struct ScriptedAccounts {
    inner: Arc<dyn AccountStore>,
    script: Script,
}

/// The use cases on `ports`, with their account store following `script`.
fn scripted(mut ports: Ports, script: Script) -> Ticketing {
    ports.accounts = Arc::new(ScriptedAccounts { inner: ports.accounts.clone(), script });
    Ticketing::new(ports, policy())
}

impl AccountStore for ScriptedAccounts {
    fn balance(&self, user: UserId) -> Result<Won, StoreError> {
        if let Script::BlockBalance(blocker) = &self.script {
            blocker.block_once();
        }
        self.inner.balance(user)
    }
    fn credit(
        &self,
        req: &CreditRequest,
        guard: Option<&IdempotencyGuard<'_>>,
    ) -> Result<Claimed<CreditOutcome>, StoreError> {
        match &self.script {
            Script::KeyedInFlight if guard.is_some() => return Ok(Claimed::InFlight),
            Script::CommitThenBlock(blocker) => {
                assert!(domain::call::commit_point(), "the caller still waits");
                blocker.block_once();
            }
            _ => {}
        }
        self.inner.credit(req, guard)
    }
    fn ledger(&self, user: UserId, query: &LedgerQuery) -> Result<Option<Vec<LedgerEntry>>, StoreError> {
        self.inner.ledger(user, query)
    }
}

/// Makes the first `balance` call block until released.
#[derive(Clone)]
struct Blocker {
    blocked: Arc<Mutex<Option<mpsc::Sender<()>>>>,
    blocked_rx: Arc<Mutex<mpsc::Receiver<()>>>,
    release_tx: Arc<Mutex<mpsc::Sender<()>>>,
    release_rx: Arc<Mutex<Option<mpsc::Receiver<()>>>>,
}

impl Blocker {
    fn new() -> Self {
        let (btx, brx) = mpsc::channel();
        let (rtx, rrx) = mpsc::channel();
        Self {
            blocked: Arc::new(Mutex::new(Some(btx))),
            blocked_rx: Arc::new(Mutex::new(brx)),
            release_tx: Arc::new(Mutex::new(rtx)),
            release_rx: Arc::new(Mutex::new(Some(rrx))),
        }
    }

    /// Called by the store: blocks the first caller until [`Blocker::release`].
    fn block_once(&self) {
        let Some(release) = self.release_rx.lock().unwrap().take() else { return };
        if let Some(tx) = self.blocked.lock().unwrap().take() {
            tx.send(()).unwrap();
        }
        release.recv_timeout(StdDuration::from_secs(30)).expect("released");
    }

    /// Waits (without blocking the test's runtime) until a store call is blocked.
    async fn wait_until_blocked(&self) {
        for _ in 0..30_000 {
            if self.blocked_rx.lock().unwrap().try_recv().is_ok() {
                return;
            }
            actix_web::rt::time::sleep(StdDuration::from_millis(1)).await;
        }
        panic!("no store call blocked");
    }

    fn release(&self) {
        self.release_tx.lock().unwrap().send(()).unwrap();
    }
}

// ---- bodies over a real connection ----------------------------------------------------------

/// Sends `head` + `partial` (fewer bytes than the declared length) on a real TCP connection,
/// half-closes it or not, and reads the whole answer.
fn short_body(addr: std::net::SocketAddr, close: bool) -> String {
    use std::io::{Read as _, Write as _};
    let mut s = std::net::TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(StdDuration::from_secs(30))).unwrap();
    s.write_all(
        b"POST /queue/tokens HTTP/1.1\r\nHost: test\r\nContent-Type: application/json\r\nContent-Length: 100\r\n\r\n{\"userId\"",
    )
    .unwrap();
    if close {
        s.shutdown(std::net::Shutdown::Write).unwrap();
    }
    let mut out = Vec::new();
    let mut buf = [0_u8; 4096];
    loop {
        let text = String::from_utf8_lossy(&out).into_owned();
        if let Some((head, body)) = text.split_once("\r\n\r\n") {
            let len = head
                .lines()
                .find_map(|l| {
                    l.to_ascii_lowercase().strip_prefix("content-length:").map(|v| v.trim().parse::<usize>().unwrap())
                })
                .unwrap_or(0);
            if body.len() >= len {
                return text;
            }
        }
        match s.read(&mut buf) {
            Ok(0) | Err(_) => return text,
            Ok(n) => out.extend_from_slice(&buf[..n]),
        }
    }
}

#[actix_web::test]
async fn a_body_shorter_than_its_length_is_answered_without_waiting_for_the_store() {
    let world = World::new();
    let state = world.builder().body_timeout(StdDuration::from_millis(200)).build();
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let server =
        actix_web::HttpServer::new(move || actix_web::App::new().configure(adapters_http::configure(state.clone())))
            .workers(1)
            .disable_signals()
            .listen(listener)
            .unwrap()
            .run();
    let handle = server.handle();
    actix_web::rt::spawn(server);
    let (closed, stalled) =
        actix_web::web::block(move || (short_body(addr, true), short_body(addr, false))).await.unwrap();
    assert!(closed.starts_with("HTTP/1.1 400"), "{closed}");
    assert!(closed.to_ascii_lowercase().contains("content-type: application/problem+json"), "{closed}");
    assert!(closed.contains("INVALID_REQUEST"), "{closed}");
    assert!(stalled.starts_with("HTTP/1.1 408"), "{stalled}");
    assert!(stalled.contains("REQUEST_TIMEOUT"), "{stalled}");
    assert_eq!(world.ticketing.queue_state().unwrap().stats.issued_through, 0, "nothing was done");
    handle.stop(true).await;
}
