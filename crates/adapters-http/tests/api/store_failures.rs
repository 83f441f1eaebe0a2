//! Store failures: 503 or 500, never a leak, and the gate.

use super::*;

#[actix_web::test]
async fn a_store_that_fails_gets_503_or_500_and_leaks_nothing() {
    let world = World::new();
    let app = app(world.state()).await;
    let user = Uuid::new_v4();
    world.store.set_failure(Some(StoreError::Unavailable("connection refused to 10.1.2.3".into())));
    let res = call(&app, get(&format!("/users/{user}/balance"))).await;
    assert_problem(&res, 503, "UNAVAILABLE");
    assert_eq!(res.header("retry-after"), Some("1"));
    assert!(!res.raw.contains("10.1.2.3"));
    let res = call(&app, get("/health/ready")).await;
    assert_problem(&res, 503, "UNAVAILABLE");
    let res = call(&app, get("/health/live")).await;
    assert_eq!(res.status, 200);
    world.store.set_failure(Some(StoreError::Timeout("canceling statement due to lock timeout".into())));
    let res = call(&app, charge_req(user, 5, Some("k"))).await;
    assert_problem(&res, 503, "UNAVAILABLE");
    world.store.set_failure(Some(StoreError::Internal("relation \"accounts\" does not exist".into())));
    let res = call(&app, get(&format!("/users/{user}/balance"))).await;
    assert_problem(&res, 500, "INTERNAL");
    assert!(!res.raw.contains("accounts"));
    world.store.set_failure(None);
    let res = call(&app, charge_req(user, 5, Some("k"))).await;
    assert_eq!(res.status, 200, "the 503 recorded nothing: the retry runs");
    assert!(res.header("idempotent-replayed").is_none());
    assert_eq!(call(&app, get("/health/ready")).await.status, 200);
}

#[actix_web::test]
async fn store_calls_wait_for_the_gate_and_start_nothing_while_it_is_closed() {
    let world = World::new();
    let open = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let app = app(world.builder().store_gate(open.clone()).build()).await;
    let user = Uuid::new_v4();
    let res = call(&app, charge_req(user, 5, Some("gate"))).await;
    assert_problem(&res, 503, "UNAVAILABLE");
    assert_eq!(call(&app, get("/health/live")).await.status, 200, "liveness needs no store");
    open.store(true, std::sync::atomic::Ordering::Release);
    let res = call(&app, charge_req(user, 5, Some("gate"))).await;
    assert_eq!((res.status, res.body["balance"].as_i64()), (200, Some(5)), "nothing was started while closed");
}
