//! The HTTP contract, end to end through actix's test service on the in-memory store with a
//! manual clock: every endpoint, every error row of `shared/api.md`, and that failed calls
//! change nothing. Admission is driven by calling `Ticketing::admit` directly.

// Helpers outside `#[test]` fns are test code too: a failed expectation should panic there.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::sync::Arc;

use actix_http::Request;
use actix_web::body::MessageBody;
use actix_web::dev::{Service, ServiceResponse};
use actix_web::http::header::HeaderMap;
use actix_web::http::Method;
use actix_web::test::{self, TestRequest};
use actix_web::App;
use adapters_http::{configure, ApiState};
use adapters_memory::MemoryStore;
use domain::clock::{Clock, ManualClock};
use domain::demo;
use domain::ids::UserId;
use domain::ports::{IssueOutcome, QueueStore, StoreError};
use domain::queue::{AdmissionOutcome, AdmissionPolicy, OsTokenGenerator, QueueCursor, QueueToken, TokenValue};
use domain::service::{Policy, Ticketing};
use serde_json::{json, Value};
use time::format_description::well_known::Rfc3339;
use time::{Duration, OffsetDateTime};
use uuid::Uuid;

/// The store, the clock and the use cases behind one test's app.
struct World {
    store: MemoryStore,
    clock: ManualClock,
    ticketing: Ticketing,
}

const HOLD_SECS: i64 = 300;
const TTL_SECS: i64 = 600;

impl World {
    fn new() -> Self {
        let store = MemoryStore::new();
        let clock = ManualClock::at_epoch();
        assert!(store.seed(&demo::catalogue(clock.now())));
        let policy = Policy {
            // A 1 s interval so that `admit` can run once per test step by moving the clock 1 s.
            admission: AdmissionPolicy {
                batch: 100,
                interval: Duration::seconds(1),
                active_ttl: Duration::seconds(TTL_SECS),
                max_active: None,
            },
            hold: Duration::seconds(HOLD_SECS),
        };
        let ticketing = Ticketing::new(store.ports(Arc::new(clock.clone()), Arc::new(OsTokenGenerator)), policy);
        Self { store, clock, ticketing }
    }

    /// The same world, but token look-ups take `delay`, like a database that stopped answering.
    fn with_slow_token_lookups(delay: std::time::Duration) -> Self {
        let world = Self::new();
        let mut ports = world.store.ports(Arc::new(world.clock.clone()), Arc::new(OsTokenGenerator));
        ports.queue = Arc::new(SlowQueue { inner: ports.queue.clone(), delay });
        let ticketing = Ticketing::new(ports, *world.ticketing.policy());
        Self { ticketing, ..world }
    }

    fn state(&self) -> ApiState {
        let store = self.store.clone();
        ApiState::new(self.ticketing.clone(), Arc::new(move || store.ping()))
    }

    /// Runs an admission tick now (one interval after the previous one).
    fn admit(&self) {
        self.clock.advance(Duration::seconds(1));
        self.ticketing.admit().expect("admission tick");
    }
}

/// A queue store whose `find` answers only after `delay`.
struct SlowQueue {
    inner: Arc<dyn QueueStore>,
    delay: std::time::Duration,
}

impl QueueStore for SlowQueue {
    fn issue(&self, user: UserId, value: TokenValue, now: OffsetDateTime) -> Result<IssueOutcome, StoreError> {
        self.inner.issue(user, value, now)
    }
    fn find(&self, value: &TokenValue) -> Result<Option<QueueToken>, StoreError> {
        std::thread::sleep(self.delay);
        self.inner.find(value)
    }
    fn find_with_cursor(&self, value: &TokenValue) -> Result<Option<(QueueToken, QueueCursor)>, StoreError> {
        self.inner.find_with_cursor(value)
    }
    fn cursor(&self) -> Result<QueueCursor, StoreError> {
        self.inner.cursor()
    }
    fn admit(&self, policy: &AdmissionPolicy, now: OffsetDateTime) -> Result<AdmissionOutcome, StoreError> {
        self.inner.admit(policy, now)
    }
    fn expire_tokens(&self, now: OffsetDateTime) -> Result<u64, StoreError> {
        self.inner.expire_tokens(now)
    }
}

async fn app(
    world: &World,
) -> impl Service<Request, Response = ServiceResponse<impl MessageBody>, Error = actix_web::Error> {
    test::init_service(App::new().configure(configure(world.state()))).await
}

/// A response, read whole.
#[derive(Debug)]
struct Resp {
    status: u16,
    headers: HeaderMap,
    body: Value,
}

impl Resp {
    fn content_type(&self) -> &str {
        self.headers.get("content-type").and_then(|v| v.to_str().ok()).unwrap_or("")
    }

    /// Asserts a problem+json body with this status and code, and no internals in it.
    #[track_caller]
    fn assert_problem(&self, status: u16, code: &str) {
        assert_eq!((self.status, self.body["code"].as_str()), (status, Some(code)), "{:?}", self.body);
        assert_eq!(self.content_type(), "application/problem+json", "{self:?}");
        for key in ["type", "title", "status", "detail", "code"] {
            assert!(self.body.get(key).is_some(), "problem lacks {key}: {}", self.body);
        }
        assert_eq!(self.body["status"], status);
        let text = self.body.to_string().to_lowercase();
        for leak in ["select ", "diesel", "panicked", "domain::", "sqlstate", "adapters_", "struct "] {
            assert!(!text.contains(leak), "problem leaks {leak:?}: {text}");
        }
    }
}

async fn send<S, B>(app: &S, req: TestRequest) -> Resp
where
    S: Service<Request, Response = ServiceResponse<B>, Error = actix_web::Error>,
    B: MessageBody,
{
    // A middleware's error (the request deadline) reaches the test service as `Err`; the real
    // server renders it with `error_response`, and so does this helper.
    let (status, headers, bytes) = match app.call(req.to_request()).await {
        Ok(res) => (res.status().as_u16(), res.headers().clone(), test::read_body(res).await),
        Err(e) => {
            let res = e.error_response();
            let (status, headers) = (res.status().as_u16(), res.headers().clone());
            (status, headers, actix_web::body::to_bytes(res.into_body()).await.unwrap_or_default())
        }
    };
    let body = serde_json::from_slice(&bytes).unwrap_or_else(|_| Value::String(String::from_utf8_lossy(&bytes).into()));
    Resp { status, headers, body }
}

fn get(path: &str, token: Option<&str>) -> TestRequest {
    let req = TestRequest::get().uri(path);
    match token {
        Some(t) => req.insert_header(("Authorization", format!("Bearer {t}"))),
        None => req,
    }
}

fn post(path: &str, token: Option<&str>, body: Value) -> TestRequest {
    let req = TestRequest::post().uri(path).set_json(body);
    match token {
        Some(t) => req.insert_header(("Authorization", format!("Bearer {t}"))),
        None => req,
    }
}

fn raw_post(path: &str, token: Option<&str>, content_type: Option<&str>, body: &str) -> TestRequest {
    let mut req = TestRequest::post().uri(path).set_payload(body.to_owned());
    if let Some(ct) = content_type {
        req = req.insert_header(("Content-Type", ct));
    }
    if let Some(t) = token {
        req = req.insert_header(("Authorization", format!("Bearer {t}")));
    }
    req
}

/// Issues a token for `user` over HTTP and returns it.
async fn issue<S, B>(app: &S, user: Uuid) -> String
where
    S: Service<Request, Response = ServiceResponse<B>, Error = actix_web::Error>,
    B: MessageBody,
{
    let r = send(app, post("/queue/tokens", None, json!({ "userId": user }))).await;
    assert!(r.status == 201 || r.status == 200, "{r:?}");
    r.body["token"].as_str().expect("token").to_owned()
}

/// A new user with an ACTIVE token.
async fn active_user<S, B>(app: &S, world: &World) -> (Uuid, String)
where
    S: Service<Request, Response = ServiceResponse<B>, Error = actix_web::Error>,
    B: MessageBody,
{
    let user = Uuid::new_v4();
    let token = issue(app, user).await;
    world.admit();
    (user, token)
}

/// The first schedule of the first concert, and its seats.
async fn first_schedule<S, B>(app: &S, token: &str) -> (String, Vec<Value>)
where
    S: Service<Request, Response = ServiceResponse<B>, Error = actix_web::Error>,
    B: MessageBody,
{
    let concerts = send(app, get("/concerts", Some(token))).await;
    assert_eq!(concerts.status, 200, "{concerts:?}");
    let concert = concerts.body[0]["id"].as_str().expect("concert id").to_owned();
    let schedules = send(app, get(&format!("/concerts/{concert}/schedules"), Some(token))).await;
    let schedule = schedules.body[0]["id"].as_str().expect("schedule id").to_owned();
    let seats = send(app, get(&format!("/schedules/{schedule}/seats"), Some(token))).await;
    assert_eq!(seats.status, 200, "{seats:?}");
    (schedule, seats.body.as_array().expect("seats").clone())
}

async fn balance<S, B>(app: &S, user: Uuid) -> i64
where
    S: Service<Request, Response = ServiceResponse<B>, Error = actix_web::Error>,
    B: MessageBody,
{
    let r = send(app, get(&format!("/users/{user}/balance"), None)).await;
    assert_eq!(r.status, 200, "{r:?}");
    r.body["balance"].as_i64().expect("balance")
}

fn is_utc_rfc3339(v: &Value) -> bool {
    v.as_str().is_some_and(|s| s.ends_with('Z') && OffsetDateTime::parse(s, &Rfc3339).is_ok())
}

fn is_lower_uuid(v: &Value) -> bool {
    v.as_str().is_some_and(|s| Uuid::parse_str(s).is_ok() && s.len() == 36 && s == s.to_lowercase())
}

// ---- queue ----------------------------------------------------------------------------------

#[actix_web::test]
async fn a_token_is_issued_once_per_user_and_reports_its_place_in_line() {
    let world = World::new();
    let app = app(&world).await;
    let (alice, bob) = (Uuid::new_v4(), Uuid::new_v4());

    let first = send(&app, post("/queue/tokens", None, json!({ "userId": alice }))).await;
    assert_eq!(first.status, 201, "{first:?}");
    assert_eq!(first.content_type(), "application/json");
    let b = &first.body;
    assert_eq!(b["userId"], alice.to_string());
    assert_eq!((b["status"].as_str(), b["position"].as_i64()), (Some("WAITING"), Some(1)));
    assert!(b["estimatedWaitSecs"].is_i64());
    assert!(is_utc_rfc3339(&b["issuedAt"]), "{b}");
    assert!(b["activatedAt"].is_null() && b["expiresAt"].is_null());
    let token = b["token"].as_str().unwrap().to_owned();
    assert_eq!(token.len(), 64);

    let again = send(&app, post("/queue/tokens", None, json!({ "userId": alice }))).await;
    assert_eq!((again.status, again.body["token"].as_str()), (200, Some(token.as_str())));

    let bob_token = issue(&app, bob).await;
    let polled = send(&app, get("/queue/token", Some(&bob_token))).await;
    assert_eq!((polled.status, polled.body["position"].as_i64()), (200, Some(2)), "{polled:?}");

    world.admit();
    let polled = send(&app, get("/queue/token", Some(&token))).await;
    let b = &polled.body;
    assert_eq!((polled.status, b["status"].as_str(), b["position"].as_i64()), (200, Some("ACTIVE"), Some(0)));
    assert_eq!(b["estimatedWaitSecs"], 0);
    assert!(is_utc_rfc3339(&b["activatedAt"]) && is_utc_rfc3339(&b["expiresAt"]), "{b}");
}

#[actix_web::test]
async fn bad_token_requests_are_rejected() {
    let world = World::new();
    let app = app(&world).await;
    for path in ["/queue/token", "/concerts"] {
        send(&app, TestRequest::get().uri(path)).await.assert_problem(401, "TOKEN_MISSING");
        for header in ["Basic dXNlcjpwYXNz", "Bearer", "Bearer   ", "Token abc", "bearer"] {
            let r = send(&app, TestRequest::get().uri(path).insert_header(("Authorization", header))).await;
            r.assert_problem(401, "TOKEN_MISSING");
            assert_eq!(r.headers.get("www-authenticate").unwrap(), "Bearer");
        }
        let garbled = actix_web::http::header::HeaderValue::from_bytes(b"Bearer \xff\xfe").unwrap();
        let r = send(&app, TestRequest::get().uri(path).insert_header(("Authorization", garbled))).await;
        r.assert_problem(401, "TOKEN_MISSING");
        send(&app, get(path, Some("not-a-token"))).await.assert_problem(401, "TOKEN_INVALID");
        send(&app, get(path, Some(&"ab".repeat(32)))).await.assert_problem(401, "TOKEN_INVALID");
    }
}

#[actix_web::test]
async fn a_waiting_token_is_not_let_in_and_keeps_its_place() {
    let world = World::new();
    let app = app(&world).await;
    let token = issue(&app, Uuid::new_v4()).await;
    send(&app, get("/concerts", Some(&token))).await.assert_problem(403, "TOKEN_NOT_ACTIVE");
    let body = json!({ "scheduleId": Uuid::new_v4(), "seatId": Uuid::new_v4() });
    send(&app, post("/reservations", Some(&token), body)).await.assert_problem(403, "TOKEN_NOT_ACTIVE");
    let polled = send(&app, get("/queue/token", Some(&token))).await;
    assert_eq!((polled.body["status"].as_str(), polled.body["position"].as_i64()), (Some("WAITING"), Some(1)));
}

#[actix_web::test]
async fn an_active_token_expires_after_its_ttl() {
    let world = World::new();
    let app = app(&world).await;
    let (user, token) = active_user(&app, &world).await;
    assert_eq!(send(&app, get("/concerts", Some(&token))).await.status, 200);
    world.clock.advance(Duration::seconds(TTL_SECS));
    send(&app, get("/concerts", Some(&token))).await.assert_problem(401, "TOKEN_EXPIRED");
    let polled = send(&app, get("/queue/token", Some(&token))).await;
    assert_eq!(
        (polled.status, polled.body["status"].as_str(), polled.body["position"].as_i64()),
        (200, Some("EXPIRED"), Some(0))
    );
    // The user may line up again, with a new token.
    let again = send(&app, post("/queue/tokens", None, json!({ "userId": user }))).await;
    assert_eq!(again.status, 201, "{again:?}");
    assert_ne!(again.body["token"].as_str(), Some(token.as_str()));
}

// ---- catalogue ------------------------------------------------------------------------------

#[actix_web::test]
async fn the_catalogue_lists_concerts_future_schedules_and_fifty_seats() {
    let world = World::new();
    let app = app(&world).await;
    let (_, token) = active_user(&app, &world).await;
    let concerts = send(&app, get("/concerts", Some(&token))).await;
    assert_eq!(concerts.status, 200);
    let list = concerts.body.as_array().unwrap();
    assert!(!list.is_empty());
    assert!(list.iter().all(|c| is_lower_uuid(&c["id"]) && c["title"].is_string()));

    let concert = list[0]["id"].as_str().unwrap();
    let schedules = send(&app, get(&format!("/concerts/{concert}/schedules"), Some(&token))).await;
    let schedules = schedules.body.as_array().unwrap().clone();
    assert!(schedules.len() >= 3);
    let starts: Vec<&str> = schedules.iter().map(|s| s["startsAt"].as_str().unwrap()).collect();
    assert!(starts.windows(2).all(|w| w[0] < w[1]), "ascending by start: {starts:?}");
    for s in &schedules {
        assert_eq!(s["concertId"].as_str(), Some(concert));
        assert_eq!((s["totalSeats"].as_i64(), s["availableSeats"].as_i64()), (Some(50), Some(50)));
        assert!(is_utc_rfc3339(&s["startsAt"]));
    }

    let (_, seats) = first_schedule(&app, &token).await;
    assert_eq!(seats.iter().map(|s| s["number"].as_i64().unwrap()).collect::<Vec<_>>(), (1..=50).collect::<Vec<_>>());
    assert!(seats.iter().all(|s| s["status"] == "AVAILABLE" && s["price"].as_i64().unwrap() > 0));
    assert!(seats.iter().all(|s| is_lower_uuid(&s["id"])));
}

#[actix_web::test]
async fn unknown_or_malformed_catalogue_ids_are_refused() {
    let world = World::new();
    let app = app(&world).await;
    let (_, token) = active_user(&app, &world).await;
    let t = Some(token.as_str());
    let unknown = Uuid::new_v4();
    send(&app, get(&format!("/concerts/{unknown}/schedules"), t)).await.assert_problem(404, "NOT_FOUND");
    send(&app, get(&format!("/schedules/{unknown}/seats"), t)).await.assert_problem(404, "NOT_FOUND");
    send(&app, get("/concerts/not-a-uuid/schedules", t)).await.assert_problem(400, "INVALID_REQUEST");
    send(&app, get("/schedules/123/seats", t)).await.assert_problem(400, "INVALID_REQUEST");
    send(&app, get("/reservations/xyz", t)).await.assert_problem(400, "INVALID_REQUEST");
}

// ---- reservations ---------------------------------------------------------------------------

#[actix_web::test]
async fn a_seat_is_held_once_and_only_its_holder_sees_the_reservation() {
    let world = World::new();
    let app = app(&world).await;
    let (alice, token) = active_user(&app, &world).await;
    let (_, other) = active_user(&app, &world).await;
    let (schedule, seats) = first_schedule(&app, &token).await;
    let seat = seats[0]["id"].as_str().unwrap().to_owned();

    let r = send(&app, post("/reservations", Some(&token), json!({ "scheduleId": schedule, "seatId": seat }))).await;
    assert_eq!(r.status, 201, "{r:?}");
    let b = &r.body;
    assert_eq!(
        (b["userId"].as_str(), b["scheduleId"].as_str(), b["seatId"].as_str()),
        (Some(alice.to_string().as_str()), Some(schedule.as_str()), Some(seat.as_str()))
    );
    assert_eq!(
        (b["seatNumber"].as_i64(), b["price"].as_i64(), b["status"].as_str()),
        (Some(1), seats[0]["price"].as_i64(), Some("HELD"))
    );
    assert!(is_utc_rfc3339(&b["heldUntil"]) && is_lower_uuid(&b["id"]));
    let id = b["id"].as_str().unwrap().to_owned();

    let taken =
        send(&app, post("/reservations", Some(&other), json!({ "scheduleId": schedule, "seatId": seat }))).await;
    taken.assert_problem(409, "SEAT_UNAVAILABLE");

    let (_, seats) = first_schedule(&app, &token).await;
    assert_eq!(seats[0]["status"], "HELD");
    let concerts = send(&app, get("/concerts", Some(&token))).await;
    let concert = concerts.body[0]["id"].as_str().unwrap();
    let schedules = send(&app, get(&format!("/concerts/{concert}/schedules"), Some(&token))).await;
    assert_eq!(schedules.body[0]["availableSeats"], 49);

    let mine = send(&app, get(&format!("/reservations/{id}"), Some(&token))).await;
    assert_eq!((mine.status, mine.body["status"].as_str()), (200, Some("HELD")));
    send(&app, get(&format!("/reservations/{id}"), Some(&other))).await.assert_problem(404, "NOT_FOUND");
    send(&app, get(&format!("/reservations/{}", Uuid::new_v4()), Some(&token))).await.assert_problem(404, "NOT_FOUND");
}

#[actix_web::test]
async fn reservation_bodies_are_strict() {
    let world = World::new();
    let app = app(&world).await;
    let (_, token) = active_user(&app, &world).await;
    let t = Some(token.as_str());
    let (schedule, seats) = first_schedule(&app, &token).await;
    let seat = seats[0]["id"].as_str().unwrap();
    let concerts = send(&app, get("/concerts", t)).await;
    let concert = concerts.body[0]["id"].as_str().unwrap();
    let schedules = send(&app, get(&format!("/concerts/{concert}/schedules"), t)).await;
    let other_schedule = schedules.body[1]["id"].as_str().unwrap();
    let foreign = send(&app, get(&format!("/schedules/{other_schedule}/seats"), t)).await;
    let foreign_seat = foreign.body[0]["id"].as_str().unwrap();

    let bad = [
        json!({ "scheduleId": schedule, "seatId": seat, "price": 1 }),
        json!({ "scheduleId": schedule, "seatId": seat, "userId": Uuid::new_v4() }),
        json!({ "scheduleId": schedule, "seatId": seat, "status": "PAID" }),
        json!({ "scheduleId": schedule }),
        json!({ "scheduleId": schedule, "seatId": "not-a-uuid" }),
        json!({ "scheduleId": 5, "seatId": seat }),
        json!([schedule, seat]),
        json!(null),
    ];
    for body in bad {
        send(&app, post("/reservations", t, body)).await.assert_problem(400, "INVALID_REQUEST");
    }
    let r = send(&app, raw_post("/reservations", t, Some("application/json"), "{\"scheduleId\":")).await;
    r.assert_problem(400, "INVALID_REQUEST");
    let body = format!(r#"{{"scheduleId":"{schedule}","seatId":"{seat}"}}"#);
    send(&app, raw_post("/reservations", t, Some("text/plain"), &body)).await.assert_problem(400, "INVALID_REQUEST");
    send(&app, raw_post("/reservations", t, None, &body)).await.assert_problem(400, "INVALID_REQUEST");
    let body = json!({ "scheduleId": schedule, "seatId": foreign_seat });
    send(&app, post("/reservations", t, body)).await.assert_problem(404, "NOT_FOUND");
    let body = json!({ "scheduleId": schedule, "seatId": Uuid::new_v4() });
    send(&app, post("/reservations", t, body)).await.assert_problem(404, "NOT_FOUND");

    // None of that held anything.
    let (_, seats) = first_schedule(&app, &token).await;
    assert!(seats.iter().all(|s| s["status"] == "AVAILABLE"));
}

#[actix_web::test]
async fn a_schedule_that_has_started_is_not_bookable() {
    let world = World::new();
    let app = app(&world).await;
    let (_, token) = active_user(&app, &world).await;
    let (schedule, seats) = first_schedule(&app, &token).await;
    // The first demo schedule starts 7 days out; the token lives 600 s, so take a fresh one.
    world.clock.advance(Duration::days(8));
    let (_, token) = active_user(&app, &world).await;
    let body = json!({ "scheduleId": schedule, "seatId": seats[0]["id"] });
    send(&app, post("/reservations", Some(&token), body)).await.assert_problem(404, "NOT_FOUND");
}

// ---- payments -------------------------------------------------------------------------------

#[actix_web::test]
async fn a_payment_needs_the_balance_then_sells_the_seat_and_uses_the_token_up() {
    let world = World::new();
    let app = app(&world).await;
    let (user, token) = active_user(&app, &world).await;
    let t = Some(token.as_str());
    let (schedule, seats) = first_schedule(&app, &token).await;
    let price = seats[0]["price"].as_i64().unwrap();
    let r = send(&app, post("/reservations", t, json!({ "scheduleId": schedule, "seatId": seats[0]["id"] }))).await;
    let reservation = r.body["id"].as_str().unwrap().to_owned();

    let short = send(&app, post(&format!("/users/{user}/balance/charge"), None, json!({ "amount": price - 1 }))).await;
    assert_eq!((short.status, short.body["balance"].as_i64()), (200, Some(price - 1)));
    send(&app, post("/payments", t, json!({ "reservationId": reservation })))
        .await
        .assert_problem(402, "INSUFFICIENT_BALANCE");
    // Nothing changed.
    assert_eq!(balance(&app, user).await, price - 1);
    let r = send(&app, get(&format!("/reservations/{reservation}"), t)).await;
    assert_eq!(r.body["status"], "HELD");

    // Unknown fields (an amount of the client's choosing) and unknown reservations are refused.
    let body = json!({ "reservationId": reservation, "amount": 1 });
    send(&app, post("/payments", t, body)).await.assert_problem(400, "INVALID_REQUEST");
    let body = json!({ "reservationId": Uuid::new_v4() });
    send(&app, post("/payments", t, body)).await.assert_problem(404, "NOT_FOUND");
    send(&app, post("/payments", t, json!({ "reservationId": "nope" }))).await.assert_problem(400, "INVALID_REQUEST");

    send(&app, post(&format!("/users/{user}/balance/charge"), None, json!({ "amount": 1_001 }))).await;
    let paid = send(&app, post("/payments", t, json!({ "reservationId": reservation }))).await;
    assert_eq!(paid.status, 201, "{paid:?}");
    let p = &paid.body;
    assert_eq!((p["amount"].as_i64(), p["balance"].as_i64()), (Some(price), Some(1_000)));
    assert_eq!(
        (p["reservationId"].as_str(), p["userId"].as_str()),
        (Some(reservation.as_str()), Some(user.to_string().as_str()))
    );
    assert!(is_utc_rfc3339(&p["paidAt"]) && is_lower_uuid(&p["id"]));
    assert_eq!(balance(&app, user).await, 1_000);

    // The token is used up.
    send(&app, get("/concerts", t)).await.assert_problem(401, "TOKEN_EXPIRED");
    let polled = send(&app, get("/queue/token", t)).await;
    assert_eq!((polled.status, polled.body["status"].as_str()), (200, Some("EXPIRED")));

    // With a new token: the seat is SOLD, the reservation PAID, and paying again is refused.
    let token2 = issue(&app, user).await;
    world.admit();
    let t2 = Some(token2.as_str());
    let (_, seats) = first_schedule(&app, &token2).await;
    assert_eq!(seats[0]["status"], "SOLD");
    let r = send(&app, get(&format!("/reservations/{reservation}"), t2)).await;
    assert_eq!((r.body["status"].as_str(), is_utc_rfc3339(&r.body["paidAt"])), (Some("PAID"), true));
    send(&app, post("/payments", t2, json!({ "reservationId": reservation })))
        .await
        .assert_problem(409, "ALREADY_PAID");
    assert_eq!(balance(&app, user).await, 1_000);

    let history = send(&app, get(&format!("/users/{user}/balance/history"), None)).await;
    let kinds: Vec<&str> = history.body.as_array().unwrap().iter().map(|e| e["kind"].as_str().unwrap()).collect();
    assert_eq!(kinds, ["CHARGE", "CHARGE", "PAYMENT"]);
    assert_eq!(history.body[2]["amount"].as_i64(), Some(-price));
}

#[actix_web::test]
async fn paying_a_lapsed_hold_is_refused_and_frees_nothing_twice() {
    let world = World::new();
    let app = app(&world).await;
    let (user, token) = active_user(&app, &world).await;
    let t = Some(token.as_str());
    let (schedule, seats) = first_schedule(&app, &token).await;
    let price = seats[0]["price"].as_i64().unwrap();
    send(&app, post(&format!("/users/{user}/balance/charge"), None, json!({ "amount": price }))).await;
    let r = send(&app, post("/reservations", t, json!({ "scheduleId": schedule, "seatId": seats[0]["id"] }))).await;
    let reservation = r.body["id"].as_str().unwrap().to_owned();

    world.clock.advance(Duration::seconds(HOLD_SECS));
    send(&app, post("/payments", t, json!({ "reservationId": reservation }))).await.assert_problem(409, "HOLD_EXPIRED");
    assert_eq!(balance(&app, user).await, price, "a refused payment changes nothing");
    let r = send(&app, get(&format!("/reservations/{reservation}"), t)).await;
    assert_eq!(r.body["status"], "EXPIRED");
    let (_, seats) = first_schedule(&app, &token).await;
    assert_eq!(seats[0]["status"], "AVAILABLE", "a lapsed hold frees the seat at once");
    let again = send(&app, post("/reservations", t, json!({ "scheduleId": schedule, "seatId": seats[0]["id"] }))).await;
    assert_eq!(again.status, 201, "{again:?}");
}

// ---- balance --------------------------------------------------------------------------------

#[actix_web::test]
async fn balances_start_at_zero_and_charges_are_validated() {
    let world = World::new();
    let app = app(&world).await;
    let user = Uuid::new_v4();
    let r = send(&app, get(&format!("/users/{user}/balance"), None)).await;
    assert_eq!(
        (r.status, r.body["userId"].as_str(), r.body["balance"].as_i64()),
        (200, Some(user.to_string().as_str()), Some(0))
    );
    send(&app, get("/users/not-a-uuid/balance", None)).await.assert_problem(400, "INVALID_REQUEST");

    let path = format!("/users/{user}/balance/charge");
    let ok = send(&app, post(&path, None, json!({ "amount": 5000 }))).await;
    assert_eq!((ok.status, ok.body["balance"].as_i64()), (200, Some(5000)));

    for amount in ["0", "-5", "1.5", "1.0", "\"100\"", "1000000001", "99999999999999999999999", "null", "true", "[1]"] {
        let body = format!(r#"{{"amount":{amount}}}"#);
        let r = send(&app, raw_post(&path, None, Some("application/json"), &body)).await;
        r.assert_problem(400, "INVALID_AMOUNT");
    }
    for body in ["{}", "[1,2", "", "{\"amount\":1,\"userId\":\"x\"}", "5000", "{\"amount\":}"] {
        let r = send(&app, raw_post(&path, None, Some("application/json"), body)).await;
        r.assert_problem(400, "INVALID_REQUEST");
    }
    send(&app, raw_post(&path, None, Some("text/plain"), r#"{"amount":1}"#))
        .await
        .assert_problem(400, "INVALID_REQUEST");
    send(&app, raw_post("/users/nope/balance/charge", None, Some("application/json"), r#"{"amount":1}"#))
        .await
        .assert_problem(400, "INVALID_REQUEST");
    assert_eq!(balance(&app, user).await, 5000, "refused charges change nothing");
}

#[actix_web::test]
async fn a_charge_past_the_balance_limit_is_refused() {
    let world = World::new();
    let app = app(&world).await;
    let user = Uuid::new_v4();
    let path = format!("/users/{user}/balance/charge");
    for _ in 0..10 {
        assert_eq!(send(&app, post(&path, None, json!({ "amount": 1_000_000_000 }))).await.status, 200);
    }
    send(&app, post(&path, None, json!({ "amount": 1 }))).await.assert_problem(409, "BALANCE_LIMIT");
    assert_eq!(balance(&app, user).await, 10_000_000_000);
}

// ---- HTTP-level errors ----------------------------------------------------------------------

#[actix_web::test]
async fn oversized_bodies_get_413_everywhere() {
    let world = World::new();
    let app = app(&world).await;
    let (_, token) = active_user(&app, &world).await;
    let big = format!("{{\"amount\": 1, \"pad\": \"{}\"}}", "x".repeat(17 * 1024));
    let user = Uuid::new_v4();
    for (path, token) in [
        ("/queue/tokens".to_owned(), None),
        (format!("/users/{user}/balance/charge"), None),
        ("/reservations".to_owned(), Some(token.as_str())),
        ("/payments".to_owned(), Some(token.as_str())),
        ("/payments".to_owned(), None),
    ] {
        send(&app, raw_post(&path, token, Some("application/json"), &big))
            .await
            .assert_problem(413, "PAYLOAD_TOO_LARGE");
    }
    assert_eq!(balance(&app, user).await, 0);
}

#[actix_web::test]
async fn unknown_routes_and_methods_are_problems_too() {
    let world = World::new();
    let app = app(&world).await;
    send(&app, TestRequest::get().uri("/nope")).await.assert_problem(404, "NOT_FOUND");
    send(&app, TestRequest::get().uri("/")).await.assert_problem(404, "NOT_FOUND");
    let r = send(&app, TestRequest::delete().uri("/concerts")).await;
    r.assert_problem(405, "METHOD_NOT_ALLOWED");
    assert_eq!(r.headers.get("allow").unwrap(), "GET");
    let r = send(&app, TestRequest::default().method(Method::GET).uri("/queue/tokens")).await;
    r.assert_problem(405, "METHOD_NOT_ALLOWED");
    assert_eq!(r.headers.get("allow").unwrap(), "POST");
}

#[actix_web::test]
async fn an_unreachable_store_answers_503_with_retry_after_and_changes_nothing() {
    let world = World::new();
    let app = app(&world).await;
    let (user, token) = active_user(&app, &world).await;
    send(&app, post(&format!("/users/{user}/balance/charge"), None, json!({ "amount": 700 }))).await;
    assert_eq!(send(&app, get("/health/ready", None)).await.status, 200);

    world.store.set_failure(Some(StoreError::Unavailable("connection refused (10.1.2.3:5432)".into())));
    let calls = [
        get("/health/ready", None),
        get(&format!("/users/{user}/balance"), None),
        post(&format!("/users/{user}/balance/charge"), None, json!({ "amount": 1 })),
        post("/queue/tokens", None, json!({ "userId": Uuid::new_v4() })),
        get("/queue/token", Some(&token)),
        get("/concerts", Some(&token)),
    ];
    for req in calls {
        let r = send(&app, req).await;
        r.assert_problem(503, "UNAVAILABLE");
        assert_eq!(r.headers.get("retry-after").unwrap(), "1");
        assert!(!r.body.to_string().contains("refused"), "{:?}", r.body);
    }
    assert_eq!(send(&app, get("/health/live", None)).await.status, 200, "liveness does not depend on the store");

    world.store.set_failure(Some(StoreError::Internal("syntax error at or near \"SELEC\"".into())));
    let r = send(&app, get(&format!("/users/{user}/balance"), None)).await;
    r.assert_problem(500, "INTERNAL");
    assert!(!r.body.to_string().contains("SELEC"));

    world.store.set_failure(None);
    assert_eq!(send(&app, get("/health/ready", None)).await.status, 200);
    assert_eq!(balance(&app, user).await, 700, "failed calls changed nothing");
}

#[actix_web::test]
async fn a_store_that_hangs_is_answered_503_at_the_deadline() {
    use std::io::{Read as _, Write as _};

    let world = World::with_slow_token_lookups(std::time::Duration::from_millis(1_500));
    let state = world.state().with_deadline(std::time::Duration::from_millis(200));
    // A real server, so the deadline's answer goes through actix's own error rendering.
    let server = actix_web::HttpServer::new(move || App::new().configure(configure(state.clone())))
        .workers(1)
        .disable_signals()
        .bind("127.0.0.1:0")
        .unwrap();
    let addr = server.addrs()[0];
    let server = server.run();
    let handle = server.handle();
    actix_web::rt::spawn(server);
    let token = world.ticketing.issue_token(UserId::random()).unwrap().view.token.value.as_str().to_owned();
    world.admit();

    let started = std::time::Instant::now();
    let response = actix_web::rt::task::spawn_blocking(move || {
        let mut conn = std::net::TcpStream::connect(addr).unwrap();
        let request = format!(
            "GET /concerts HTTP/1.1\r\nHost: localhost\r\nAuthorization: Bearer {token}\r\nConnection: close\r\n\r\n"
        );
        conn.write_all(request.as_bytes()).unwrap();
        let mut response = String::new();
        conn.read_to_string(&mut response).unwrap();
        response
    })
    .await
    .unwrap();
    let elapsed = started.elapsed();
    handle.stop(false).await;

    let lower = response.to_lowercase();
    assert!(lower.starts_with("http/1.1 503"), "{response}");
    assert!(lower.contains("retry-after: 1") && lower.contains("content-type: application/problem+json"), "{response}");
    assert!(response.contains(r#""code":"UNAVAILABLE""#), "{response}");
    assert!(elapsed < std::time::Duration::from_secs(1), "answered at the deadline, not after the store: {elapsed:?}");
}

// ---- operations -----------------------------------------------------------------------------

#[actix_web::test]
async fn health_and_the_openapi_document_are_served() {
    let world = World::new();
    let app = app(&world).await;
    let live = send(&app, get("/health/live", None)).await;
    assert_eq!((live.status, live.body["status"].as_str()), (200, Some("ok")));
    let ready = send(&app, get("/health/ready", None)).await;
    assert_eq!((ready.status, ready.body["status"].as_str()), (200, Some("ready")));

    let doc = send(&app, get("/openapi.json", None)).await;
    assert_eq!(doc.status, 200);
    assert!(doc.body["openapi"].as_str().unwrap().starts_with('3'));
    let paths = doc.body["paths"].as_object().unwrap();
    for (path, method, statuses) in [
        ("/queue/tokens", "post", &["200", "201", "400", "413", "503"][..]),
        ("/queue/token", "get", &["200", "401", "503"]),
        ("/concerts", "get", &["200", "401", "403", "503"]),
        ("/concerts/{concertId}/schedules", "get", &["200", "400", "401", "403", "404", "503"]),
        ("/schedules/{scheduleId}/seats", "get", &["200", "400", "401", "403", "404", "503"]),
        ("/reservations", "post", &["201", "400", "401", "403", "404", "409", "413", "503"]),
        ("/reservations/{reservationId}", "get", &["200", "400", "401", "403", "404", "503"]),
        ("/payments", "post", &["201", "400", "401", "402", "403", "404", "409", "413", "503"]),
        ("/users/{userId}/balance", "get", &["200", "400", "503"]),
        ("/users/{userId}/balance/charge", "post", &["200", "400", "409", "413", "503"]),
        ("/health/live", "get", &["200"]),
        ("/health/ready", "get", &["200", "503"]),
        ("/openapi.json", "get", &["200"]),
    ] {
        let op = &paths[path][method];
        for s in statuses {
            assert!(op["responses"].get(*s).is_some(), "{method} {path} lacks {s}");
        }
    }
    let schemas = doc.body["components"]["schemas"].as_object().unwrap();
    for name in ["Problem", "ErrorCode", "TokenResponse", "ReservationResponse", "PaymentResponse"] {
        assert!(schemas.contains_key(name), "missing schema {name}");
    }
    let codes = schemas["ErrorCode"]["enum"].as_array().unwrap();
    for code in ["INVALID_REQUEST", "TOKEN_MISSING", "SEAT_UNAVAILABLE", "PAYLOAD_TOO_LARGE", "UNAVAILABLE"] {
        assert!(codes.iter().any(|c| c == code), "ErrorCode lacks {code}");
    }
}
