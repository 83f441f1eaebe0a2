//! Payments.

use super::*;

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
