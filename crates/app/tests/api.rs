//! The application as a whole, in process: built from `Settings` on port 0 with the memory
//! store, driven over real HTTP with reqwest, the real scheduler admitting tokens.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    reason = "test code: a failed expectation must fail the test"
)]

use std::time::{Duration, Instant};

use app::{Application, Settings};
use reqwest::StatusCode;
use serde_json::{json, Value};
use tokio::sync::oneshot;
use tokio::task::JoinHandle;
use uuid::Uuid;

/// A running app and the switch that stops it.
struct TestApp {
    base: String,
    http: reqwest::Client,
    stop: Option<oneshot::Sender<()>>,
    task: Option<JoinHandle<anyhow::Result<()>>>,
}

impl TestApp {
    fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    async fn get(&self, path: &str, token: Option<&str>) -> (StatusCode, Value) {
        let mut req = self.http.get(self.url(path));
        if let Some(t) = token {
            req = req.bearer_auth(t);
        }
        read(req.send().await.unwrap()).await
    }

    async fn post(&self, path: &str, token: Option<&str>, body: Value) -> (StatusCode, Value) {
        let mut req = self.http.post(self.url(path)).json(&body);
        if let Some(t) = token {
            req = req.bearer_auth(t);
        }
        read(req.send().await.unwrap()).await
    }

    /// Stops the app gracefully and returns how `run_until` ended.
    async fn stop(mut self) -> anyhow::Result<()> {
        self.stop.take().unwrap().send(()).unwrap();
        tokio::time::timeout(Duration::from_secs(10), self.task.take().unwrap()).await.expect("stops in time").unwrap()
    }
}

async fn read(res: reqwest::Response) -> (StatusCode, Value) {
    let status = res.status();
    let text = res.text().await.unwrap();
    (status, serde_json::from_str(&text).unwrap_or(Value::String(text)))
}

/// Builds the app on a free port with the memory store, a 1 s admission interval checked every
/// 50 ms, and `extra` flags; runs it in a task.
async fn spawn_app(extra: &[&str]) -> TestApp {
    let mut flags = vec![
        "--store",
        "memory",
        "--bind-addr",
        "127.0.0.1:0",
        "--queue-admit-interval-secs",
        "1",
        "--scheduler-check-millis",
        "50",
    ];
    flags.extend_from_slice(extra);
    // Flags only: a developer's DATABASE_URL or ADMIN_TOKEN must not change the test.
    let settings = Settings::from_flags_only(flags).expect("valid flags");
    let app = Application::build(settings).await.expect("app builds");
    let base = format!("http://127.0.0.1:{}", app.port());
    let (tx, rx) = oneshot::channel::<()>();
    let task = tokio::spawn(app.run_until(async move {
        let _ = rx.await;
    }));
    TestApp {
        base,
        http: reqwest::Client::builder().timeout(Duration::from_secs(10)).build().unwrap(),
        stop: Some(tx),
        task: Some(task),
    }
}

async fn wait_active(app: &TestApp, token: &str) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while Instant::now() < deadline {
        if app.get("/queue/token", Some(token)).await.1["status"] == "ACTIVE" {
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("token not admitted in time");
}

#[tokio::test]
async fn health_and_openapi_are_served() {
    let app = spawn_app(&[]).await;
    assert_eq!(app.get("/health/live", None).await.0, StatusCode::OK);
    assert_eq!(app.get("/health/ready", None).await.0, StatusCode::OK);
    let (status, doc) = app.get("/openapi.json", None).await;
    assert_eq!(status, StatusCode::OK);
    assert!(doc["openapi"].as_str().unwrap().starts_with('3'));
    let (status, problem) = app.get("/no/such/route", None).await;
    assert_eq!((status, problem["code"].as_str()), (StatusCode::NOT_FOUND, Some("NOT_FOUND")));
    app.stop().await.unwrap();
}

#[tokio::test]
async fn the_scheduler_admits_and_a_purchase_goes_through() {
    let app = spawn_app(&[]).await;
    let user = Uuid::new_v4();
    let (status, token) = app.post("/queue/tokens", None, json!({ "userId": user })).await;
    assert_eq!(status, StatusCode::CREATED, "{token}");
    let token = token["token"].as_str().unwrap().to_owned();
    wait_active(&app, &token).await;
    let t = Some(token.as_str());

    let (_, concerts) = app.get("/concerts", t).await;
    let concert = concerts[0]["id"].as_str().unwrap();
    let (_, schedules) = app.get(&format!("/concerts/{concert}/schedules"), t).await;
    assert!(schedules.as_array().unwrap().len() >= 3);
    let schedule = schedules[0]["id"].as_str().unwrap();
    let (_, seats) = app.get(&format!("/schedules/{schedule}/seats"), t).await;
    assert_eq!(seats.as_array().unwrap().len(), 50);
    let price = seats[0]["price"].as_i64().unwrap();

    let (status, r) = app.post("/reservations", t, json!({ "scheduleId": schedule, "seatId": seats[0]["id"] })).await;
    assert_eq!(status, StatusCode::CREATED, "{r}");
    let (status, b) = app.post(&format!("/users/{user}/balance/charge"), None, json!({ "amount": price })).await;
    assert_eq!((status, b["balance"].as_i64()), (StatusCode::OK, Some(price)));
    let (status, p) = app.post("/payments", t, json!({ "reservationId": r["id"] })).await;
    assert_eq!((status, p["balance"].as_i64()), (StatusCode::CREATED, Some(0)), "{p}");
    let (status, e) = app.get("/concerts", t).await;
    assert_eq!((status, e["code"].as_str()), (StatusCode::UNAUTHORIZED, Some("TOKEN_EXPIRED")));
    app.stop().await.unwrap();
}

#[tokio::test]
async fn an_api_only_instance_runs_no_scheduler() {
    let settings =
        Settings::from_flags_only(["--store", "memory", "--bind-addr", "127.0.0.1:0", "--scheduler-enabled", "false"])
            .unwrap();
    let app = Application::build(settings).await.unwrap();
    assert!(!app.runs_scheduler());
    let settings = Settings::from_flags_only(["--store", "memory", "--bind-addr", "127.0.0.1:0"]).unwrap();
    let with = Application::build(settings).await.unwrap();
    assert!(with.runs_scheduler());
}

#[tokio::test]
async fn operator_metrics_and_page_are_wired() {
    let token = "an-operator-secret-of-32-chars!!";
    let app = spawn_app(&["--admin-token", token]).await;
    let http = &app.http;
    let res = http.get(app.url("/admin/queue")).bearer_auth(token).send().await.unwrap();
    assert_eq!(res.status(), StatusCode::OK);
    let queue: Value = res.json().await.unwrap();
    assert_eq!((queue["admitIntervalSecs"].as_i64(), queue["paused"].as_bool()), (Some(1), Some(false)));
    let res = http.get(app.url("/admin/queue")).send().await.unwrap();
    assert_eq!(res.status(), StatusCode::UNAUTHORIZED);
    let res = http.get(app.url("/metrics")).bearer_auth(token).send().await.unwrap();
    assert_eq!(res.status(), StatusCode::OK);
    assert!(res.text().await.unwrap().contains("http_requests_total"));
    let res = http.get(app.url("/")).send().await.unwrap();
    assert_eq!(res.status(), StatusCode::OK);
    assert!(res.headers()["content-type"].to_str().unwrap().starts_with("text/html"));
    app.stop().await.unwrap();
}

#[tokio::test]
async fn without_an_operator_token_the_admin_api_is_off() {
    let app = spawn_app(&[]).await;
    let (status, problem) = app.get("/admin/queue", None).await;
    assert_eq!((status, problem["code"].as_str()), (StatusCode::NOT_FOUND, Some("NOT_FOUND")));
    app.stop().await.unwrap();
}

#[tokio::test]
async fn a_graceful_stop_closes_the_listener_and_ends_cleanly() {
    let app = spawn_app(&[]).await;
    let base = app.base.clone();
    let http = app.http.clone();
    assert_eq!(app.get("/health/live", None).await.0, StatusCode::OK);
    app.stop().await.expect("clean stop");
    assert!(http.get(format!("{base}/health/live")).send().await.is_err(), "no longer accepting");
}

#[tokio::test]
async fn binding_a_taken_address_fails_to_build() {
    let app = spawn_app(&[]).await;
    let port = app.base.rsplit(':').next().unwrap().to_owned();
    let settings =
        Settings::from_flags_only(["--store", "memory", "--bind-addr", &format!("127.0.0.1:{port}")]).unwrap();
    assert!(Application::build(settings).await.is_err());
    app.stop().await.unwrap();
}
