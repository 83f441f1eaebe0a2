//! The issue rate limit per client address, behind trusted proxies.

use super::*;

#[actix_web::test]
async fn issue_is_limited_per_client_address_whatever_the_answer() {
    let world = World::new();
    let app = app(world.builder().issue_rate_per_min(2).build()).await;
    let from = |peer: &str| post("/queue/tokens").peer_addr(peer.parse().unwrap());
    let res = call(&app, from("198.51.100.1:4000").insert_header(json_type()).set_payload("{")).await;
    assert_problem(&res, 400, "INVALID_REQUEST");
    let res = call(&app, from("198.51.100.1:4001").set_json(json!({"userId": Uuid::new_v4()}))).await;
    assert_eq!(res.status, 201);
    let res = call(&app, from("198.51.100.1:4002").set_json(json!({"userId": Uuid::new_v4()}))).await;
    assert_problem(&res, 429, "RATE_LIMITED");
    let wait: u64 = res.header("retry-after").unwrap().parse().unwrap();
    assert!((1..=60).contains(&wait), "{wait}");
    assert_eq!(world.ticketing.queue_state().unwrap().stats.issued_through, 1, "nothing stored");
    let res = call(&app, from("198.51.100.2:4000").set_json(json!({"userId": Uuid::new_v4()}))).await;
    assert_eq!(res.status, 201, "another address has its own allowance");
    // Forwarded-for from an untrusted peer changes nothing.
    let res = call(
        &app,
        from("198.51.100.1:4003")
            .insert_header(("X-Forwarded-For", "203.0.113.77"))
            .set_json(json!({"userId": Uuid::new_v4()})),
    )
    .await;
    assert_problem(&res, 429, "RATE_LIMITED");
    // Other paths are not limited.
    let res = call(&app, get("/health/live").peer_addr("198.51.100.1:4004".parse().unwrap())).await;
    assert_eq!(res.status, 200);
}

#[actix_web::test]
async fn behind_trusted_proxies_the_forwarded_client_is_limited() {
    let world = World::new();
    let proxies = adapters_http::TrustedProxies::parse_list("10.0.0.0/8").unwrap();
    let app = app(world.builder().issue_rate_per_min(1).trusted_proxies(proxies).build()).await;
    let via = |xff: &str| {
        post("/queue/tokens")
            .peer_addr("10.0.0.1:5000".parse().unwrap())
            .insert_header(("X-Forwarded-For", xff.to_owned()))
            .set_json(json!({"userId": Uuid::new_v4()}))
    };
    assert_eq!(call(&app, via("203.0.113.5")).await.status, 201);
    assert_problem(&call(&app, via("203.0.113.5")).await, 429, "RATE_LIMITED");
    // The right-most untrusted entry is the client, whatever the client wrote to its left.
    assert_problem(&call(&app, via("1.1.1.1, 203.0.113.5, 10.0.0.9")).await, 429, "RATE_LIMITED");
    assert_eq!(call(&app, via("203.0.113.5, 203.0.113.6")).await.status, 201);
    // No header: the proxy itself is the client.
    let bare =
        post("/queue/tokens").peer_addr("10.0.0.1:5000".parse().unwrap()).set_json(json!({"userId": Uuid::new_v4()}));
    assert_eq!(call(&app, bare).await.status, 201);
}

#[actix_web::test]
async fn the_rate_limit_tracks_a_bounded_number_of_addresses() {
    let world = World::new();
    let app = app(world.builder().issue_rate_per_min(1).issue_rate_keys(3).build()).await;
    let from = |n: u8| {
        post("/queue/tokens")
            .peer_addr(format!("192.0.2.{n}:1000").parse().unwrap())
            .set_json(json!({"userId": Uuid::new_v4()}))
    };
    for n in 1..=3 {
        assert_eq!(call(&app, from(n)).await.status, 201);
    }
    // The table is full of fresh entries: newcomers share one allowance, and never get past it.
    assert_eq!(call(&app, from(100)).await.status, 201);
    assert_problem(&call(&app, from(101)).await, 429, "RATE_LIMITED");
    assert_problem(&call(&app, from(102)).await, 429, "RATE_LIMITED");
    // The tracked addresses keep their own.
    assert_problem(&call(&app, from(1)).await, 429, "RATE_LIMITED");
}
