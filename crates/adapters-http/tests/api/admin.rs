//! The operator API.

use super::*;

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

/// `GET /admin/audit`: every change made through the operator API, newest first, with who made
/// it (the operator token's fingerprint), when, and the state before and after; paged by `seq`.
#[actix_web::test]
async fn the_operator_log_lists_every_change_newest_first() {
    let world = World::new();
    let app = app(world.state()).await;
    let admin = |req: TestRequest| req.insert_header(bearer(ADMIN));
    // The test world's catalogue was made by the use case too: one line already.
    let res = call(&app, admin(get("/admin/audit"))).await;
    assert_eq!(res.status, 200, "{res:?}");
    let before = res.body["entries"].as_array().map_or(0, Vec::len);

    let res = call(&app, admin(patch("/admin/queue")).set_json(json!({"paused": true}))).await;
    assert_eq!(res.status, 200);
    let concert = json!({"title": "Logged", "schedules": [{"startsAt": "2099-01-01T19:00:00Z", "seats": [{"number": 1, "price": 5}]}]});
    let res = call(&app, admin(post("/admin/concerts")).set_json(concert)).await;
    assert_eq!(res.status, 201, "{res:?}");
    let concert_id = res.body["id"].as_str().unwrap().to_owned();
    let res = call(&app, admin(patch("/admin/queue")).set_json(json!({"paused": false, "admitBatch": 7}))).await;
    assert_eq!(res.status, 200);
    // Refused changes are not logged.
    assert_eq!(call(&app, admin(patch("/admin/queue")).set_json(json!({"admitBatch": 0}))).await.status, 400);

    let res = call(&app, admin(get("/admin/audit"))).await;
    let entries = res.body["entries"].as_array().unwrap().clone();
    let actions: Vec<&str> = entries.iter().map(|e| e["action"].as_str().unwrap()).collect();
    assert_eq!(actions.len(), before + 3, "{res:?}");
    assert_eq!(actions[..3], ["queue.update", "concert.create", "queue.update"], "{res:?}");
    let last = &entries[0];
    assert_eq!(last["target"], "main");
    assert_eq!(last["before"], "paused=true batch=100 interval=1s ttl=600s max_active=none");
    assert_eq!(last["after"], "paused=false batch=7 interval=1s ttl=600s max_active=none");
    assert!(last["actor"].as_str().is_some_and(|a| a.len() == 8 && a != ADMIN), "a fingerprint, never the token");
    assert!(last["at"].is_string() && last["seq"].is_i64());
    assert_eq!((entries[1]["target"].as_str(), &entries[1]["before"]), (Some(concert_id.as_str()), &Value::Null));
    assert_eq!(res.body["nextBefore"], Value::Null);

    let res = call(&app, admin(get("/admin/audit?limit=2"))).await;
    assert_eq!(res.body["entries"].as_array().map(Vec::len), Some(2));
    let next = res.body["nextBefore"].as_i64().unwrap();
    let res = call(&app, admin(get(&format!("/admin/audit?limit=2&before={next}")))).await;
    let page = res.body["entries"].as_array().unwrap();
    assert_eq!(page[0]["action"], "queue.update", "the oldest change of this test, after the first page");
    assert!(page.iter().all(|e| e["seq"].as_i64() < Some(next)), "{page:?}");
    assert_eq!(page.len(), (before + 1).min(2));

    for bad in ["limit=0", "limit=101", "limit=x", "before=-1", "before=abc"] {
        assert_problem(&call(&app, admin(get(&format!("/admin/audit?{bad}")))).await, 400, "INVALID_REQUEST");
    }
    assert_problem(&call(&app, get("/admin/audit")).await, 401, "TOKEN_MISSING");
}
