//! The app as built from its settings with `--queue-store redis`: joining and polling are
//! served on the HTTP workers through the async Redis client and the poll caches (no hop to
//! the blocking pool), as `adapters_http::state` describes; driven over real HTTP.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    reason = "test code: a failed expectation must fail the test"
)]

use std::time::{Duration, Instant};

use adapters_http::StoreCalls;
use app::{Application, Settings};
use reqwest::StatusCode;
use serde_json::{json, Value};
use uuid::Uuid;

const REDIS_URL: &str = "redis://127.0.0.1:6379";

/// Deletes the test's Redis keys when dropped.
struct Keys(String);

impl Drop for Keys {
    fn drop(&mut self) {
        let Ok(client) = redis::Client::open(REDIS_URL) else { return };
        let Ok(mut con) = client.get_connection_with_timeout(Duration::from_secs(1)) else { return };
        let keys: Vec<String> =
            redis::cmd("KEYS").arg(format!("{{{}[}}:]*", self.0)).query(&mut con).unwrap_or_default();
        if !keys.is_empty() {
            let _: Result<i64, _> = redis::cmd("DEL").arg(keys).query(&mut con);
        }
    }
}

async fn issue(http: &reqwest::Client, base: &str, user: Uuid) -> (StatusCode, Value) {
    let res = http.post(format!("{base}/queue/tokens")).json(&json!({ "userId": user })).send().await.unwrap();
    (res.status(), res.json().await.unwrap())
}

#[tokio::test]
async fn issue_and_poll_on_redis_take_no_hop() {
    let prefix = format!("test-app-front-{}", Uuid::new_v4().simple());
    let _keys = Keys(prefix.clone());
    let flags = [
        "--store",
        "memory",
        "--queue-store",
        "redis",
        "--redis-url",
        REDIS_URL,
        "--redis-key-prefix",
        prefix.as_str(),
        "--bind-addr",
        "127.0.0.1:0",
        // The settings cache's age limit: the keeper rereads it three times as often.
        "--scheduler-check-millis",
        "1000",
    ];
    let settings = Settings::from_flags_only(flags).expect("valid flags");
    let app = Application::build(settings).await.expect("app builds");
    let (base, api) = (format!("http://127.0.0.1:{}", app.port()), app.api());
    let (tx, rx) = tokio::sync::oneshot::channel::<()>();
    let task = tokio::spawn(app.run_until(async move {
        let _ = rx.await;
    }));
    let http = reqwest::Client::builder().timeout(Duration::from_secs(10)).build().unwrap();

    // Until the keeper has filled the settings cache, joins take the blocking path.
    let deadline = Instant::now() + Duration::from_secs(10);
    while api.store_calls().nonblocking == 0 {
        assert!(Instant::now() < deadline, "no join was served without the hop: {:?}", api.store_calls());
        let (status, _) = issue(&http, &base, Uuid::new_v4()).await;
        assert_eq!(status, StatusCode::CREATED);
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    let before = api.store_calls();
    for _ in 0..10 {
        let (status, body) = issue(&http, &base, Uuid::new_v4()).await;
        assert_eq!(status, StatusCode::CREATED, "{body}");
        let token = body["token"].as_str().unwrap();
        let res = http.get(format!("{base}/queue/token")).bearer_auth(token).send().await.unwrap();
        assert_eq!(res.status(), StatusCode::OK);
        let polled: Value = res.json().await.unwrap();
        assert_eq!(
            (polled["status"].as_str(), polled["position"].as_i64()),
            (Some("WAITING"), body["position"].as_i64())
        );
    }
    let after = api.store_calls();
    // Each join on the worker; each poll from memory (the join filled the poll cache). A keeper
    // late under load may let a join or two hop: never most of them.
    let (hops, awaited) = (after.blocking - before.blocking, after.nonblocking - before.nonblocking);
    assert!(awaited >= 8 && hops + awaited == 10, "{before:?} -> {after:?}");
    assert_ne!(after, StoreCalls::default());

    tx.send(()).unwrap();
    tokio::time::timeout(Duration::from_secs(10), task).await.expect("stops in time").unwrap().unwrap();
}
