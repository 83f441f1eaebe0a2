//! Errors of the HTTP layer itself: problem+json everywhere.

use super::*;

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
