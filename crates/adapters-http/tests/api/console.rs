//! The operator's console: its page and files (only with the operator API on), each room's
//! history as this instance sampled it, and the operator's list of concerts.

use super::*;

#[actix_web::test]
async fn the_console_is_served_with_a_strict_policy_only_while_the_operator_api_is_on() {
    let world = World::new();
    let app = app(world.state()).await;
    let page = call(&app, get("/admin/console")).await;
    assert_eq!(page.status, 200, "{}", page.raw);
    assert_eq!(page.header("content-type"), Some("text/html; charset=utf-8"));
    let csp = page.header("content-security-policy").unwrap().to_owned();
    assert!(csp.contains("default-src 'self'") && !csp.contains("unsafe") && !csp.contains("http"), "{csp}");
    assert!(csp.contains("frame-ancestors 'none'"), "{csp}");
    assert_eq!(page.header("referrer-policy"), Some("no-referrer"));
    assert!(page.raw.contains("/admin/console/console.js"), "the page loads its own script");
    let script = call(&app, get("/admin/console/console.js")).await;
    assert_eq!(script.status, 200);
    assert_eq!(script.header("content-type"), Some("text/javascript; charset=utf-8"));
    assert!(script.header("content-security-policy").is_some());
    let style = call(&app, get("/admin/console/console.css")).await;
    assert_eq!(style.header("content-type"), Some("text/css; charset=utf-8"));
    assert_problem(&call(&app, get("/admin/console/nope.js")).await, 404, "NOT_FOUND");
    assert_problem(&call(&app, get("/admin/console/..%2FCargo.toml")).await, 404, "NOT_FOUND");
    // The buyer's files do not serve the console's, nor the other way round.
    assert_problem(&call(&app, get("/assets/console.js")).await, 404, "NOT_FOUND");
    assert_problem(&call(&app, get("/admin/console/app.js")).await, 404, "NOT_FOUND");

    let off = actix_web::test::init_service(
        actix_web::App::new().configure(adapters_http::configure(world.builder().admin_token(None).build())),
    )
    .await;
    for path in ["/admin/console", "/admin/console/console.js", "/admin/rooms/main/history", "/admin/concerts"] {
        assert_problem(&call(&off, get(path)).await, 404, "NOT_FOUND");
    }
}

#[actix_web::test]
async fn a_rooms_history_needs_the_operator_and_answers_this_instances_samples() {
    let world = World::new();
    let state = world.state();
    let app = app(state.clone()).await;
    let history = |room: &str| get(&format!("/admin/rooms/{room}/history")).insert_header(bearer(ADMIN));

    assert_problem(&call(&app, get("/admin/rooms/main/history")).await, 401, "TOKEN_MISSING");
    assert_problem(
        &call(&app, get("/admin/rooms/main/history").insert_header(bearer("not-the-operator"))).await,
        401,
        "TOKEN_INVALID",
    );
    assert_problem(&call(&app, history("nowhere")).await, 404, "NOT_FOUND");
    assert_problem(&call(&app, history("Not%20A%20Slug")).await, 404, "NOT_FOUND");

    let empty = call(&app, history("main")).await;
    assert_eq!(empty.status, 200, "{}", empty.raw);
    assert_eq!(empty.body["roomId"], "main");
    assert_eq!(empty.body["intervalSecs"], 10);
    assert_eq!(empty.body["capacity"], 180);
    assert_eq!(empty.body["samples"], json!([]));
    let instance = empty.body["instance"].as_str().unwrap();
    assert!(instance.ends_with(&format!(":{}", std::process::id())), "{instance}");

    let created = call(
        &app,
        post("/admin/rooms")
            .insert_header(bearer(ADMIN))
            .insert_header(json_type())
            .set_payload(json!({"id": "tour", "name": "The tour", "concertIds": []}).to_string()),
    )
    .await;
    assert_eq!(created.status, 201, "{}", created.raw);
    state.sample_rooms().await.unwrap();
    for _ in 0..3 {
        issue(&app, Uuid::new_v4()).await;
    }
    world.admit();
    state.sample_rooms().await.unwrap();

    let main = call(&app, history("main")).await;
    let samples = main.body["samples"].as_array().unwrap();
    assert_eq!(samples.len(), 2, "{}", main.raw);
    assert_eq!((samples[0]["waiting"].as_u64(), samples[0]["admittedThrough"].as_i64()), (Some(0), Some(0)));
    let now = call(&app, get("/admin/rooms/main").insert_header(bearer(ADMIN))).await.body;
    for key in ["waiting", "active", "admittedThrough", "abandoned"] {
        assert_eq!(samples[1][key], now[key], "{key} as the operator view tells it");
    }
    assert!(samples[1]["admittedThrough"].as_i64().unwrap() > 0, "{}", main.raw);
    assert!(samples[0]["at"].as_str().unwrap() < samples[1]["at"].as_str().unwrap(), "oldest first");
    let tour = call(&app, history("tour")).await;
    assert_eq!(tour.body["samples"].as_array().map(Vec::len), Some(2));
    assert_eq!(tour.body["samples"][1]["waiting"], 0);
}

#[test]
fn the_history_keeps_the_last_180_samples_of_each_listed_room() {
    let world = World::new();
    let history = adapters_http::history::RoomHistory::default();
    for _ in 0..200 {
        world.clock.advance(Duration::seconds(10));
        history.record(&world.ticketing.rooms_overview().unwrap());
    }
    let main = history.of("main");
    assert_eq!(main.len(), adapters_http::history::SAMPLES);
    assert_eq!(main.last().unwrap().at, world.now(), "the newest is kept");
    assert!(history.of("tour").is_empty());
}

#[actix_web::test]
async fn the_operator_lists_every_concert() {
    let world = World::new();
    let app = app(world.state()).await;
    assert_problem(&call(&app, get("/admin/concerts")).await, 401, "TOKEN_MISSING");
    let listed = call(&app, get("/admin/concerts").insert_header(bearer(ADMIN))).await;
    assert_eq!(listed.status, 200, "{}", listed.raw);
    let ids: Vec<&str> = listed.body.as_array().unwrap().iter().map(|c| c["id"].as_str().unwrap()).collect();
    assert!(ids.contains(&world.concert.to_string().as_str()), "{}", listed.raw);
}
