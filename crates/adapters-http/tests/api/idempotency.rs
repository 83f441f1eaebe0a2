//! Idempotent retries of charges and payments.

use super::*;

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
