//! The page, the docs and the OpenAPI document.

use super::*;

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
