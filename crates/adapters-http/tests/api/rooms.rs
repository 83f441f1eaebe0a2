//! Rooms over HTTP: the on-sales, joining a room, the gate on another room's concerts, and the
//! operator's rooms with every refusal of the contract.

use super::*;

fn admin_post(path: &str, body: Value) -> TestRequest {
    post(path).insert_header(bearer(ADMIN)).insert_header(json_type()).set_payload(body.to_string())
}

fn admin_patch(path: &str, body: Value) -> TestRequest {
    patch(path).insert_header(bearer(ADMIN)).insert_header(json_type()).set_payload(body.to_string())
}

fn join(user: Uuid, room: &str) -> TestRequest {
    post("/queue/tokens").insert_header(json_type()).set_payload(json!({"userId": user, "roomId": room}).to_string())
}

/// The room's token, admitted by ticks of the rooms.
async fn active_in_room<S, B>(world: &World, app: &S, user: Uuid, room: &str) -> String
where
    S: actix_web::dev::Service<
        actix_http::Request,
        Response = actix_web::dev::ServiceResponse<B>,
        Error = actix_web::Error,
    >,
    B: actix_web::body::MessageBody,
{
    let res = call(app, join(user, room)).await;
    assert_eq!(res.status, 201, "{}", res.raw);
    let token = res.body["token"].as_str().unwrap().to_owned();
    world.clock.advance(Duration::seconds(60));
    for tick in world.ticketing.tick_rooms().unwrap() {
        tick.unwrap();
    }
    token
}

#[actix_web::test]
async fn a_room_is_created_joined_and_gates_its_concerts() {
    let world = World::new();
    let app = app(world.state()).await;
    let created = call(
        &app,
        admin_post(
            "/admin/rooms",
            json!({"id": "tour", "name": "The tour", "concertIds": [world.concert], "admitBatch": 5}),
        ),
    )
    .await;
    assert_eq!(created.status, 201, "{}", created.raw);
    assert_eq!(created.body["id"], "tour");
    assert_eq!(created.body["state"], "OPEN");
    assert_eq!(created.body["admitBatch"], 5);
    assert_eq!(created.body["abandonAfterSecs"], 0);
    assert_eq!(created.body["draw"], Value::Null);
    assert_eq!(created.body["concertIds"], json!([world.concert]));

    let rooms = call(&app, get("/rooms")).await;
    assert_eq!(rooms.status, 200);
    let ids: Vec<&str> = rooms.body.as_array().unwrap().iter().map(|r| r["id"].as_str().unwrap()).collect();
    assert_eq!(ids, ["main", "tour"], "main first");
    assert_eq!(rooms.body[1]["waiting"], 0);
    assert_eq!(call(&app, get("/rooms/tour")).await.body["name"], "The tour");
    assert_problem(&call(&app, get("/rooms/nowhere")).await, 404, "NOT_FOUND");
    assert_problem(&call(&app, get("/rooms/Not%20A%20Slug")).await, 404, "NOT_FOUND");

    let user = Uuid::new_v4();
    let tour_token = active_in_room(&world, &app, user, "tour").await;
    assert!(tour_token.starts_with("tour."));
    let polled = call(&app, get("/queue/token").insert_header(bearer(&tour_token))).await;
    assert_eq!((polled.body["status"].as_str(), polled.body["roomId"].as_str()), (Some("ACTIVE"), Some("tour")));
    let listed = call(&app, get("/concerts").insert_header(bearer(&tour_token))).await;
    assert_eq!(listed.body.as_array().map(Vec::len), Some(1));

    // main's token: the tour's concert is another room's.
    let main_token = active_token(&world, &app, user).await;
    assert_eq!(call(&app, get("/concerts").insert_header(bearer(&main_token))).await.body, json!([]));
    let res =
        call(&app, get(&format!("/concerts/{}/schedules", world.concert)).insert_header(bearer(&main_token))).await;
    assert_problem(&res, 403, "ROOM_MISMATCH");
    assert_eq!(res.body["roomId"], "tour");
    let res = call(&app, get(&format!("/schedules/{}/seats", world.schedule)).insert_header(bearer(&main_token))).await;
    assert_problem(&res, 403, "ROOM_MISMATCH");
    let res = call(&app, reserve(&main_token, world.schedule, world.seat(1))).await;
    assert_problem(&res, 403, "ROOM_MISMATCH");
    assert_eq!(res.body["roomId"], "tour");
    let held = hold(&app, &tour_token, world.schedule, world.seat(1)).await;
    charge(&app, user, 100_000, None).await;
    let res = call(&app, pay(&main_token, &held, None)).await;
    assert_problem(&res, 403, "ROOM_MISMATCH");
    assert_eq!(balance(&app, user).await, 100_000, "nothing paid");
    assert_eq!(call(&app, get(&format!("/reservations/{held}")).insert_header(bearer(&main_token))).await.status, 200);
    assert_eq!(call(&app, pay(&tour_token, &held, None)).await.status, 201);
    let used = call(&app, get("/queue/token").insert_header(bearer(&tour_token))).await;
    assert_eq!((used.body["status"].as_str(), used.body["expiredReason"].as_str()), (Some("EXPIRED"), Some("PAID")));
    let main_after = call(&app, get("/queue/token").insert_header(bearer(&main_token))).await;
    assert_eq!(main_after.body["status"], "ACTIVE", "a payment uses up no token of another room");
}

#[actix_web::test]
async fn joining_follows_the_rooms_state_and_refusals_store_nothing() {
    let world = World::new();
    let app = app(world.state()).await;
    let opens = world.now() + Duration::seconds(120);
    let pre = world.now() + Duration::seconds(60);
    let body = json!({"id": "tour", "name": "Tour", "concertIds": [], "opensAt": rfc3339(opens), "prequeueOpensAt": rfc3339(pre)});
    let created = call(&app, admin_post("/admin/rooms", body.clone())).await;
    assert_eq!(
        (created.status, created.body["state"].as_str(), created.body["drawAtOpen"].as_bool()),
        (201, Some("SCHEDULED"), Some(true))
    );
    assert_problem(&call(&app, admin_post("/admin/rooms", body)).await, 409, "ROOM_EXISTS");

    let res = call(&app, join(Uuid::new_v4(), "tour")).await;
    assert_problem(&res, 409, "ROOM_NOT_OPEN");
    assert_eq!(
        (res.body["opensAt"].as_str(), res.body["prequeueOpensAt"].as_str()),
        (Some(rfc3339(opens).as_str()), Some(rfc3339(pre).as_str()))
    );
    assert_problem(&call(&app, join(Uuid::new_v4(), "nowhere")).await, 404, "NOT_FOUND");
    assert_problem(&call(&app, join(Uuid::new_v4(), "Bad Slug")).await, 400, "INVALID_REQUEST");

    world.clock.advance(Duration::seconds(60));
    let res = call(&app, join(Uuid::new_v4(), "tour")).await;
    assert_eq!(res.status, 201, "{}", res.raw);
    assert_eq!((res.body["position"].clone(), res.body["estimatedWaitSecs"].clone()), (Value::Null, Value::Null));
    assert_eq!(res.body["drawAt"].as_str(), Some(rfc3339(opens).as_str()));
    let token = res.body["token"].as_str().unwrap().to_owned();
    let listed = call(&app, get("/rooms/tour")).await;
    assert_eq!(
        (listed.body["state"].as_str(), listed.body["estimatedWaitSecs"].clone()),
        (Some("PREQUEUE"), Value::Null)
    );

    // The opening passes: the draw, then positions.
    world.clock.advance(Duration::seconds(60));
    world.ticketing.tick_rooms().unwrap().into_iter().for_each(|t| drop(t.unwrap()));
    let drawn = call(&app, get("/admin/rooms/tour").insert_header(bearer(ADMIN))).await;
    assert_eq!(drawn.body["draw"]["entrants"], 1);
    assert!(drawn.body["draw"]["seed"].as_u64().is_some_and(|s| s < 1 << 53), "exact as a JSON number");
    let late =
        call(&app, admin_patch("/admin/rooms/tour", json!({"opensAt": rfc3339(opens + Duration::hours(1))}))).await;
    assert_problem(&late, 409, "ROOM_ALREADY_OPEN");
    let polled = call(&app, get("/queue/token").insert_header(bearer(&token))).await;
    assert_eq!((polled.body["status"].as_str(), polled.body["drawAt"].clone()), (Some("ACTIVE"), Value::Null));

    let closed = call(&app, admin_patch("/admin/rooms/tour", json!({"closed": true}))).await;
    assert_eq!(closed.body["state"], "CLOSED");
    assert_problem(&call(&app, join(Uuid::new_v4(), "tour")).await, 409, "ROOM_CLOSED");
}

#[actix_web::test]
async fn the_operator_refusals_name_their_field() {
    let world = World::new();
    let app = app(world.state()).await;
    let base = json!({"id": "tour", "name": "Tour", "concertIds": [world.concert]});
    assert_eq!(call(&app, admin_post("/admin/rooms", base.clone())).await.status, 201);
    let mut other = base.clone();
    other["id"] = json!("other");
    assert_problem(&call(&app, admin_post("/admin/rooms", other.clone())).await, 409, "CONCERT_IN_ROOM");
    other["concertIds"] = json!([Uuid::new_v4()]);
    assert_problem(&call(&app, admin_post("/admin/rooms", other.clone())).await, 404, "NOT_FOUND");
    for (field, value) in [
        ("id", json!("Main")),
        ("id", json!("main")),
        ("name", json!("")),
        ("abandonAfterSecs", json!(10)),
        ("admitBatch", json!(0)),
        ("opensAt", json!(rfc3339(world.now() - Duration::seconds(1)))),
        ("prequeueOpensAt", json!(rfc3339(world.now()))),
        ("surprise", json!(1)),
    ] {
        let mut bad = json!({"id": "third", "name": "Third", "concertIds": []});
        bad[field] = value;
        let res = call(&app, admin_post("/admin/rooms", bad)).await;
        assert_problem(&res, 400, "INVALID_REQUEST");
    }
    assert_problem(&call(&app, admin_patch("/admin/rooms/nowhere", json!({"paused": true}))).await, 404, "NOT_FOUND");
    assert_problem(&call(&app, admin_patch("/admin/rooms/tour", json!({}))).await, 400, "INVALID_REQUEST");
    assert_problem(
        &call(&app, admin_patch("/admin/rooms/main", json!({"closed": true}))).await,
        400,
        "INVALID_REQUEST",
    );
    let rooms = call(&app, get("/admin/rooms").insert_header(bearer(ADMIN))).await;
    assert_eq!(rooms.body.as_array().map(Vec::len), Some(2), "refusals stored nothing");
    // main's view is the waiting room's.
    let paused = call(&app, admin_patch("/admin/rooms/main", json!({"paused": true, "admitBatch": 7}))).await;
    assert_eq!((paused.status, paused.body["state"].as_str()), (200, Some("PAUSED")));
    let queue = call(&app, get("/admin/queue").insert_header(bearer(ADMIN))).await;
    assert_eq!((queue.body["paused"].as_bool(), queue.body["admitBatch"].as_u64()), (Some(true), Some(7)));
    let main = call(&app, get("/admin/rooms/main").insert_header(bearer(ADMIN))).await;
    assert_eq!(main.body["waiting"], queue.body["waiting"]);
    assert_eq!(call(&app, get("/admin/rooms").insert_header(bearer(ADMIN))).await.body[0]["id"], "main");
}
