//! Holds and the hold limit.

use super::*;

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
