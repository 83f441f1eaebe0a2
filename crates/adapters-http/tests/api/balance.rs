//! Balances, their history, charges and what a body may say.

use super::*;

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
