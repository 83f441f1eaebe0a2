//! `GET /metrics` after known traffic: counts by route template (`unmatched` included), the
//! domain counters, the gauges read at scrape time, and the operator bearer. A test binary of
//! its own: the recorder is global to the process, so exact counts need a process to themselves.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    reason = "test code: a failed expectation must fail the test"
)]

mod common;

use std::collections::{BTreeMap, HashMap};

use actix_web::http::header::CONTENT_LENGTH;
use actix_web::test::TestRequest;
use adapters_http::metrics::{install_recorder, QUEUE_TOKENS_ADMITTED_TOTAL};
use adapters_http::PoolConnections;
use common::*;
use domain::error::StoreError;
use uuid::Uuid;

type Labels = BTreeMap<String, String>;

/// Every sample of a text exposition, by name and label set.
fn samples(text: &str) -> HashMap<(String, Labels), f64> {
    let mut out = HashMap::new();
    for line in text.lines().filter(|l| !l.starts_with('#') && !l.trim().is_empty()) {
        let (series, value) = line.rsplit_once(' ').unwrap();
        let (name, labels) = match series.split_once('{') {
            Some((name, rest)) => {
                let labels = rest
                    .trim_end_matches('}')
                    .split("\",")
                    .filter(|p| !p.is_empty())
                    .map(|p| {
                        let (k, v) = p.split_once("=\"").unwrap();
                        (k.to_owned(), v.trim_end_matches('"').to_owned())
                    })
                    .collect();
                (name.to_owned(), labels)
            }
            None => (series.to_owned(), Labels::new()),
        };
        out.insert((name, labels), value.parse().unwrap());
    }
    out
}

fn get_sample(all: &HashMap<(String, Labels), f64>, name: &str, labels: &[(&str, &str)]) -> f64 {
    let labels: Labels = labels.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned())).collect();
    *all.get(&(name.to_owned(), labels.clone())).unwrap_or_else(|| panic!("no sample {name}{labels:?}"))
}

#[actix_web::test]
async fn a_scrape_after_known_traffic_counts_it_by_route_template() {
    let handle = install_recorder().unwrap();
    install_recorder().expect("installing again returns the same handle");
    let world = World::new();
    let state = world.builder().metrics(handle).pool_gauge(|| PoolConnections { idle: 3, busy: 2 }).build();
    let app = app(state).await;

    let user = Uuid::new_v4();
    charge(&app, user, 50_000, None).await;
    let token = issue(&app, user).await;
    issue(&app, user).await; // the same token again: not a new one
    issue(&app, Uuid::new_v4()).await;
    world.admit();
    // The scheduler counts its admissions under this name; stand in for it.
    metrics::counter!(QUEUE_TOKENS_ADMITTED_TOTAL, "room" => "main").increment(2);
    for _ in 0..3 {
        let res = call(&app, get(&format!("/schedules/{}/seats", world.schedule)).insert_header(bearer(&token))).await;
        assert_eq!(res.status, 200);
    }
    assert_eq!(call(&app, get("/schedules/NOPE/seats").insert_header(bearer(&token))).await.status, 400);
    assert_eq!(call(&app, get("/nowhere")).await.status, 404);
    assert_eq!(call(&app, get(&format!("/nowhere/{}", Uuid::new_v4()))).await.status, 404);
    assert_eq!(call(&app, get("/admin/queue").insert_header(bearer(ADMIN))).await.status, 200);
    // A method the path does not serve, and a body refused before routing: the path's template.
    assert_eq!(call(&app, TestRequest::delete().uri("/concerts")).await.status, 405);
    let oversized = post("/reservations").insert_header((CONTENT_LENGTH, "1000000"));
    assert_eq!(call(&app, oversized).await.status, 413);
    let r = hold(&app, &token, world.schedule, world.seat(1)).await;
    assert_eq!(call(&app, pay(&token, &r, Some("k1"))).await.status, 201);
    assert_eq!(call(&app, pay(&token, &r, Some("k1"))).await.status, 201, "a replay");
    world.store.set_failure(Some(StoreError::Timeout("lock timeout".into())));
    assert_eq!(call(&app, get(&format!("/users/{user}/balance"))).await.status, 503);
    world.store.set_failure(None);

    assert_problem(&call(&app, get("/metrics")).await, 401, "TOKEN_MISSING");
    assert_problem(&call(&app, get("/metrics").insert_header(bearer(&token))).await, 401, "TOKEN_INVALID");
    let scrape = call(&app, get("/metrics").insert_header(bearer(ADMIN))).await;
    assert_eq!(scrape.status, 200);
    assert_eq!(scrape.header("content-type"), Some("text/plain; version=0.0.4; charset=utf-8"));
    let all = samples(&scrape.raw);
    let requests = |method: &str, route: &str, status: &str| {
        get_sample(&all, "http_requests_total", &[("method", method), ("route", route), ("status", status)])
    };
    assert_eq!(requests("GET", "/schedules/{scheduleId}/seats", "200"), 3.0);
    assert_eq!(requests("GET", "/schedules/{scheduleId}/seats", "400"), 1.0);
    assert_eq!(requests("GET", "unmatched", "404"), 2.0);
    assert_eq!(requests("GET", "/admin/queue", "200"), 1.0, "a template under a nested scope");
    assert_eq!(requests("DELETE", "/concerts", "405"), 1.0);
    assert_eq!(requests("POST", "/reservations", "413"), 1.0);
    assert_eq!(requests("POST", "/queue/tokens", "201"), 2.0);
    assert_eq!(requests("POST", "/queue/tokens", "200"), 1.0);
    assert_eq!(requests("POST", "/payments", "201"), 2.0);
    assert_eq!(requests("GET", "/users/{userId}/balance", "503"), 1.0);
    assert_eq!(requests("GET", "/metrics", "401"), 2.0);
    assert!(!scrape.raw.contains(&world.schedule.to_string()), "raw paths never become labels");
    let seats_route = [("method", "GET"), ("route", "/schedules/{scheduleId}/seats")];
    assert_eq!(get_sample(&all, "http_request_duration_seconds_count", &seats_route), 4.0);
    let mut le = seats_route.to_vec();
    le.push(("le", "+Inf"));
    assert_eq!(get_sample(&all, "http_request_duration_seconds_bucket", &le), 4.0);

    assert_eq!(get_sample(&all, "queue_tokens_issued_total", &[("room", "main")]), 2.0);
    assert_eq!(get_sample(&all, "queue_tokens_admitted_total", &[("room", "main")]), 2.0);
    assert_eq!(get_sample(&all, "reservations_held_total", &[]), 1.0);
    assert_eq!(get_sample(&all, "payments_total", &[]), 1.0, "a replay is not a payment");
    assert_eq!(get_sample(&all, "store_errors_total", &[("kind", "timeout")]), 1.0);
    let q = world.ticketing.queue_state().unwrap();
    assert_eq!(get_sample(&all, "queue_waiting", &[("room", "main")]), q.stats.waiting as f64);
    assert_eq!(get_sample(&all, "queue_active", &[("room", "main")]), q.stats.active as f64);
    assert_eq!(get_sample(&all, "queue_active", &[("room", "main")]), 1.0, "one token paid, one still active");
    assert_eq!(get_sample(&all, "db_pool_connections", &[("state", "idle")]), 3.0);
    assert_eq!(get_sample(&all, "db_pool_connections", &[("state", "busy")]), 2.0);
}
