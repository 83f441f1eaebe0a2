//! What the API test binaries share: a world (in-memory store, manual clock, a test concert)
//! and request helpers over actix's test service.

#![allow(
    dead_code,
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    reason = "helpers shared by several test binaries (each uses some), where a failed expectation must fail the test"
)]

use std::sync::Arc;

use actix_http::Request;
use actix_web::body::MessageBody;
use actix_web::dev::{Service, ServiceResponse};
use actix_web::http::header::{HeaderMap, AUTHORIZATION, CONTENT_TYPE};
use actix_web::http::Method;
use actix_web::test::{self, TestRequest};
use actix_web::App;
use adapters_http::{configure, ApiState, ApiStateBuilder};
use adapters_local::OsRandom;
use adapters_memory::MemoryStore;
use domain::catalogue::{ConcertDraft, ScheduleDraft, SeatDraft};
use domain::clock::{Clock, ManualClock};
use domain::queue::{AdmissionPolicy, QueueSettings};
use domain::service::{Policy, Ports, Ticketing};
use serde_json::{json, Value};
use time::format_description::well_known::Rfc3339;
use time::{Duration, OffsetDateTime};
use uuid::Uuid;

pub const HOLD_SECS: i64 = 300;
pub const TTL_SECS: i64 = 600;
pub const MAX_HOLDS: u32 = 3;
pub const ADMIN: &str = "operator-secret-for-tests";

pub fn policy() -> Policy {
    Policy { hold: Duration::seconds(HOLD_SECS), max_holds_per_user: MAX_HOLDS, ..Policy::default() }
}

/// The store, the clock, the use cases and the test concert behind one test's app.
pub struct World {
    pub store: MemoryStore,
    pub clock: ManualClock,
    pub ticketing: Ticketing,
    pub concert: Uuid,
    /// Ten seats, numbered 1 to 10, priced 1000 x number, starting in a day.
    pub schedule: Uuid,
    /// One seat, starting in two days.
    pub other_schedule: Uuid,
    pub seats: Vec<Uuid>,
}

impl World {
    pub fn new() -> Self {
        let clock = ManualClock::at_epoch();
        // A 1 s interval so that `admit` can run once per test step by moving the clock 1 s.
        let store = MemoryStore::with_settings(QueueSettings {
            paused: false,
            admission: AdmissionPolicy {
                batch: 100,
                interval: Duration::seconds(1),
                active_ttl: Duration::seconds(TTL_SECS),
                max_active: None,
                abandon_after: None,
            },
        });
        let ticketing = Ticketing::new(store.ports(Arc::new(clock.clone()), Arc::new(OsRandom)), policy());
        let now = clock.now();
        let draft = ConcertDraft {
            title: "Test Concert".into(),
            artist: "Tester".into(),
            venue: "Hall".into(),
            schedules: vec![
                ScheduleDraft {
                    starts_at: now + Duration::days(1),
                    seats: (1..=10).map(|n| SeatDraft { number: n, price: 1000 * n }).collect(),
                },
                ScheduleDraft { starts_at: now + Duration::days(2), seats: vec![SeatDraft { number: 1, price: 500 }] },
            ],
        };
        let concert = ticketing.create_concert("test", &draft).expect("test concert");
        let first = &concert.schedules[0];
        Self {
            concert: concert.concert.id.as_uuid(),
            schedule: first.id.as_uuid(),
            other_schedule: concert.schedules[1].id.as_uuid(),
            seats: first.seats.iter().map(|s| s.id.as_uuid()).collect(),
            store,
            clock,
            ticketing,
        }
    }

    /// Fresh ports over the same store and clock (to wrap one in a test double).
    pub fn ports(&self) -> Ports {
        self.store.ports(Arc::new(self.clock.clone()), Arc::new(OsRandom))
    }

    /// The seat numbered `n` of the main schedule.
    pub fn seat(&self, n: u32) -> Uuid {
        self.seats[n as usize - 1]
    }

    pub fn now(&self) -> OffsetDateTime {
        self.clock.now()
    }

    /// A state with the readiness probe and the operator token.
    pub fn builder(&self) -> ApiStateBuilder {
        let store = self.store.clone();
        ApiState::builder(self.ticketing.clone()).readiness(move || store.ping()).admin_token(Some(ADMIN))
    }

    pub fn state(&self) -> ApiState {
        self.builder().build()
    }

    /// Runs an admission tick now (one interval after the previous one).
    pub fn admit(&self) {
        self.clock.advance(Duration::seconds(1));
        self.ticketing.admit().expect("admission tick");
    }
}

pub async fn app(
    state: ApiState,
) -> impl Service<Request, Response = ServiceResponse<impl MessageBody>, Error = actix_web::Error> {
    test::init_service(App::new().configure(configure(state))).await
}

/// A response, read whole.
#[derive(Debug)]
pub struct Resp {
    pub status: u16,
    pub headers: HeaderMap,
    pub raw: String,
    pub body: Value,
}

impl Resp {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).map(|v| v.to_str().unwrap())
    }
}

pub async fn call<S, B>(app: &S, req: TestRequest) -> Resp
where
    S: Service<Request, Response = ServiceResponse<B>, Error = actix_web::Error>,
    B: MessageBody,
{
    match test::try_call_service(app, req.to_request()).await {
        Ok(res) => {
            let status = res.status().as_u16();
            let headers = res.headers().clone();
            let bytes = test::read_body(res).await;
            let raw = String::from_utf8_lossy(&bytes).into_owned();
            let body = serde_json::from_str(&raw).unwrap_or(Value::Null);
            Resp { status, headers, raw, body }
        }
        Err(e) => {
            let res = e.as_response_error().error_response();
            panic!("the service failed instead of answering: {} {:?}", res.status(), e);
        }
    }
}

pub fn get(path: &str) -> TestRequest {
    TestRequest::get().uri(path)
}

pub fn post(path: &str) -> TestRequest {
    TestRequest::post().uri(path)
}

pub fn patch(path: &str) -> TestRequest {
    TestRequest::default().method(Method::PATCH).uri(path)
}

pub fn bearer(token: &str) -> (actix_web::http::header::HeaderName, String) {
    (AUTHORIZATION, format!("Bearer {token}"))
}

pub fn json_type() -> (actix_web::http::header::HeaderName, &'static str) {
    (CONTENT_TYPE, "application/json")
}

/// The response is the contract's problem: status, media type, code, and the fields of RFC 9457.
#[track_caller]
pub fn assert_problem(res: &Resp, status: u16, code: &str) {
    assert_eq!(res.status, status, "expected {status} {code}, got {res:?}");
    assert_eq!(res.header("content-type"), Some("application/problem+json"), "{res:?}");
    assert_eq!(res.body["code"], code, "{res:?}");
    assert_eq!(res.body["status"], status);
    assert!(res.body["title"].is_string());
    assert!(res.body["detail"].is_string());
    assert_eq!(res.body["type"], json!(format!("/problems/{}", code.to_lowercase().replace('_', "-"))));
}

pub async fn issue<S, B>(app: &S, user: Uuid) -> String
where
    S: Service<Request, Response = ServiceResponse<B>, Error = actix_web::Error>,
    B: MessageBody,
{
    let res = call(app, post("/queue/tokens").set_json(json!({ "userId": user }))).await;
    assert!(res.status == 201 || res.status == 200, "{res:?}");
    res.body["token"].as_str().unwrap().to_owned()
}

/// A token of `user` admitted by one tick.
pub async fn active_token<S, B>(world: &World, app: &S, user: Uuid) -> String
where
    S: Service<Request, Response = ServiceResponse<B>, Error = actix_web::Error>,
    B: MessageBody,
{
    let token = issue(app, user).await;
    world.admit();
    token
}

pub fn reserve(token: &str, schedule: Uuid, seat: Uuid) -> TestRequest {
    post("/reservations").insert_header(bearer(token)).set_json(json!({ "scheduleId": schedule, "seatId": seat }))
}

/// Holds a seat; the reservation's id.
pub async fn hold<S, B>(app: &S, token: &str, schedule: Uuid, seat: Uuid) -> String
where
    S: Service<Request, Response = ServiceResponse<B>, Error = actix_web::Error>,
    B: MessageBody,
{
    let res = call(app, reserve(token, schedule, seat)).await;
    assert_eq!(res.status, 201, "{res:?}");
    res.body["id"].as_str().unwrap().to_owned()
}

pub fn pay(token: &str, reservation: &str, key: Option<&str>) -> TestRequest {
    let mut req = post("/payments").insert_header(bearer(token));
    if let Some(key) = key {
        req = req.insert_header(("Idempotency-Key", key.to_owned()));
    }
    req.set_json(json!({ "reservationId": reservation }))
}

pub fn charge_req(user: Uuid, amount: i64, key: Option<&str>) -> TestRequest {
    let mut req = post(&format!("/users/{user}/balance/charge"));
    if let Some(key) = key {
        req = req.insert_header(("Idempotency-Key", key.to_owned()));
    }
    req.set_json(json!({ "amount": amount }))
}

pub async fn charge<S, B>(app: &S, user: Uuid, amount: i64, key: Option<&str>)
where
    S: Service<Request, Response = ServiceResponse<B>, Error = actix_web::Error>,
    B: MessageBody,
{
    let res = call(app, charge_req(user, amount, key)).await;
    assert_eq!(res.status, 200, "{res:?}");
}

pub async fn balance<S, B>(app: &S, user: Uuid) -> i64
where
    S: Service<Request, Response = ServiceResponse<B>, Error = actix_web::Error>,
    B: MessageBody,
{
    let res = call(app, get(&format!("/users/{user}/balance"))).await;
    assert_eq!(res.status, 200, "{res:?}");
    res.body["balance"].as_i64().unwrap()
}

pub fn rfc3339(t: OffsetDateTime) -> String {
    t.format(&Rfc3339).unwrap()
}
