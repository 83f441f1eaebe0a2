//! The catalogue needs an ACTIVE token.

use super::*;

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
