//! The front door on Redis without the hop: `POST /queue/tokens` and `GET /queue/token` with
//! the queue on the machine's Redis (a key namespace of each test's own), the rest in memory,
//! the poll caches and the settings cache in front as the app puts them. The state's
//! [`adapters_http::StoreCalls`] tell which path served: awaited on the worker, or a hop to
//! the blocking pool.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, reason = "tests")]

mod common;

use std::net::TcpListener;
use std::sync::Arc;
use std::time::{Duration as StdDuration, Instant};

use adapters_http::{ApiState, StoreCalls};
use adapters_local::async_lines::CachedAsyncLines;
use adapters_local::poll_cache::{CachedQueue, PollCacheBudget, PollCacheSettings};
use adapters_local::rooms_cache::{CachedLines, CachedRooms};
use adapters_local::settings_cache::CachedSettings;
use adapters_local::ticker::ManualTicker;
use adapters_redis::{AsyncRedisLines, RedisConfig, RedisQueue};
use common::{assert_problem, bearer, call, get, post, World};
use domain::clock::Clock as _;
use domain::ids::ConcertId;
use domain::ids::UserId;
use domain::ports::{AsyncQueueLines, QueueLines, QueueStore, RoomStore, SettingsStore};
use domain::queue::TokenValue;
use domain::room::{RoomDraft, RoomId};
use domain::service::{Ports, Ticketing};
use serde_json::json;
use uuid::Uuid;

/// A key namespace on the machine's Redis, its keys deleted on drop.
struct Namespace(RedisConfig);

impl Namespace {
    fn new() -> Self {
        Self(RedisConfig::with_url_and_prefix(
            "redis://127.0.0.1:6379",
            format!("test-front-{}", Uuid::new_v4().simple()),
        ))
    }
}

impl Drop for Namespace {
    fn drop(&mut self) {
        let Ok(client) = redis::Client::open(self.0.url.as_str()) else { return };
        let Ok(mut con) = client.get_connection_with_timeout(StdDuration::from_secs(1)) else { return };
        let pattern = format!("{{{}[}}:]*", self.0.prefix);
        let keys: Vec<String> = redis::cmd("KEYS").arg(&pattern).query(&mut con).unwrap_or_default();
        if !keys.is_empty() {
            let _: Result<i64, _> = redis::cmd("DEL").arg(keys).query(&mut con);
        }
    }
}

/// One instance with its queue on the Redis of `cfg`: the blocking adapter behind the poll
/// caches, the async client through the same caches, and the settings cached (filled, and
/// fresh while the manual ticker stands still) when `settings_in_memory`.
struct Instance {
    state: ApiState,
    /// The blocking adapter, to play another instance.
    redis: RedisQueue,
}

fn instance(world: &World, cfg: &RedisConfig, settings_in_memory: bool) -> Instance {
    instance_with_rooms(world, cfg, settings_in_memory, None)
}

/// [`instance`], with the rooms behind `rooms` (a cache the test fills) when given.
fn instance_with_rooms(
    world: &World,
    cfg: &RedisConfig,
    settings_in_memory: bool,
    room_store: Option<Arc<dyn RoomStore>>,
) -> Instance {
    let ticker = Arc::new(ManualTicker::new());
    let redis = RedisQueue::new(cfg).unwrap().with_clock(Arc::new(world.clock.clone()));
    let memory = world.ports();
    let budget = PollCacheBudget::default();
    let cache = PollCacheSettings::default();
    let main = Arc::new(CachedQueue::sharing(Arc::new(redis.clone()), ticker.clone(), cache, budget.clone()));
    let rooms = Arc::new(CachedLines::new(Arc::new(redis.lines()), ticker.clone(), cache, budget));
    let settings: Arc<dyn SettingsStore> = if settings_in_memory {
        let cached = CachedSettings::new(memory.settings.clone(), ticker, StdDuration::from_secs(1));
        cached.refresh().unwrap();
        Arc::new(cached)
    } else {
        memory.settings.clone()
    };
    let lines: Arc<dyn AsyncQueueLines> =
        Arc::new(CachedAsyncLines::new(Arc::new(AsyncRedisLines::new(cfg).unwrap()), main.clone(), rooms.clone()));
    let queue: Arc<dyn QueueStore> = main;
    let room_lines: Arc<dyn QueueLines> = rooms;
    let rooms_port = room_store.unwrap_or_else(|| memory.rooms.clone());
    let ports = Ports { queue, lines: room_lines, settings, rooms: rooms_port, ..memory };
    let ticketing = Ticketing::new(ports, common::policy()).with_async_queue(lines);
    Instance { state: ApiState::builder(ticketing).build(), redis }
}

fn calls(blocking: u64, nonblocking: u64) -> StoreCalls {
    StoreCalls { blocking, nonblocking }
}

/// A token value of Redis' layout (random bytes, then `seq` 1), so a poll of it asks Redis.
fn value() -> TokenValue {
    let mut bytes = [0_u8; 32];
    bytes[..16].copy_from_slice(Uuid::new_v4().as_bytes());
    bytes[24..].copy_from_slice(&1_u64.to_be_bytes());
    TokenValue::from_bytes(bytes)
}

#[actix_web::test]
async fn issue_and_poll_on_redis_are_served_without_the_hop() {
    let (world, ns) = (World::new(), Namespace::new());
    let one = instance(&world, &ns.0, true);
    let app = common::app(one.state.clone()).await;

    let user = Uuid::new_v4();
    let first = call(&app, post("/queue/tokens").set_json(json!({ "userId": user }))).await;
    assert_eq!(first.status, 201, "{first:?}");
    assert_eq!((first.body["status"].as_str(), first.body["position"].as_i64()), (Some("WAITING"), Some(1)));
    assert_eq!(one.state.store_calls(), calls(0, 1), "issued on the worker");
    let token = first.body["token"].as_str().unwrap().to_owned();

    // Just issued: answered from memory at once, no store call at all.
    let polled = call(&app, get("/queue/token").insert_header(bearer(&token))).await;
    assert_eq!((polled.status, polled.body["position"].as_i64()), (200, Some(1)), "{polled:?}");
    assert_eq!(one.state.store_calls(), calls(0, 1));

    // The same user again: their token, 200.
    let again = call(&app, post("/queue/tokens").set_json(json!({ "userId": user }))).await;
    assert_eq!((again.status, again.body["token"].as_str()), (200, Some(token.as_str())), "{again:?}");
    assert_eq!(one.state.store_calls(), calls(0, 2));

    // A token another instance issued: read from Redis on the worker, then from memory.
    let other = one.redis.issue(UserId::from_uuid(Uuid::new_v4()), value(), world.clock.now()).unwrap().token;
    for expected in [calls(0, 3), calls(0, 3)] {
        let read = call(&app, get("/queue/token").insert_header(bearer(other.value.as_str()))).await;
        assert_eq!((read.status, read.body["position"].as_i64()), (200, Some(2)), "{read:?}");
        assert_eq!(read.body["token"].as_str(), Some(other.value.as_str()));
        assert_eq!(one.state.store_calls(), expected);
    }

    // An unknown token: 401 from the worker's read.
    let unknown = call(&app, get("/queue/token").insert_header(bearer(value().as_str()))).await;
    assert_problem(&unknown, 401, "TOKEN_INVALID");
    assert_eq!(one.state.store_calls(), calls(0, 4));

    // Admitted (by the blocking adapter, as the scheduler does): the poll after the cache's
    // cursor is dropped reads ACTIVE from Redis on the worker.
    world.clock.advance(time::Duration::seconds(1));
    one.state.ticketing().admit().unwrap();
    let active = call(&app, get("/queue/token").insert_header(bearer(&token))).await;
    assert_eq!(active.body["status"], "ACTIVE", "{active:?}");
    assert_eq!(one.state.store_calls(), calls(0, 5));
}

#[actix_web::test]
async fn without_the_settings_in_memory_the_blocking_path_serves() {
    let (world, ns) = (World::new(), Namespace::new());
    let one = instance(&world, &ns.0, false);
    let app = common::app(one.state.clone()).await;

    let user = Uuid::new_v4();
    let first = call(&app, post("/queue/tokens").set_json(json!({ "userId": user }))).await;
    assert_eq!(first.status, 201, "{first:?}");
    assert_eq!(one.state.store_calls(), calls(1, 0), "a hop: the settings had to be read");

    let other = one.redis.issue(UserId::from_uuid(Uuid::new_v4()), value(), world.clock.now()).unwrap().token;
    let read = call(&app, get("/queue/token").insert_header(bearer(other.value.as_str()))).await;
    assert_eq!((read.status, read.body["position"].as_i64()), (200, Some(2)), "{read:?}");
    assert_eq!(one.state.store_calls(), calls(2, 0));
}

#[actix_web::test]
async fn concurrent_issues_for_one_user_on_the_worker_yield_one_token() {
    let (world, ns) = (World::new(), Namespace::new());
    let one = instance(&world, &ns.0, true);
    let app = common::app(one.state.clone()).await;
    let user = Uuid::new_v4();
    let requests = (0..32).map(|_| call(&app, post("/queue/tokens").set_json(json!({ "userId": user }))));
    let answers = futures_util::future::join_all(requests).await;
    assert_eq!(answers.iter().filter(|r| r.status == 201).count(), 1, "{answers:?}");
    assert!(answers.iter().all(|r| r.status == 201 || r.status == 200), "{answers:?}");
    let token = &answers[0].body["token"];
    assert!(answers.iter().all(|r| r.body["token"] == *token && r.body["position"] == 1));
    assert_eq!(one.state.store_calls(), calls(0, 32));
    assert_eq!(one.redis.stats().unwrap().issued_through, 1);
}

#[actix_web::test]
async fn with_redis_down_issue_and_poll_answer_503_at_once() {
    let world = World::new();
    // A port nothing listens on.
    let port = TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let cfg = RedisConfig::with_url_and_prefix(format!("redis://127.0.0.1:{port}"), "down");
    let one = instance(&world, &cfg, true);
    let app = common::app(one.state.clone()).await;

    let started = Instant::now();
    for _ in 0..20 {
        let res = call(&app, post("/queue/tokens").set_json(json!({ "userId": Uuid::new_v4() }))).await;
        assert_problem(&res, 503, "UNAVAILABLE");
        let res = call(&app, get("/queue/token").insert_header(bearer(value().as_str()))).await;
        assert_problem(&res, 503, "UNAVAILABLE");
    }
    // The first attempt is refused, the others fail without trying: far below one connect
    // timeout for all forty.
    assert!(started.elapsed() < StdDuration::from_millis(500), "{:?}", started.elapsed());
    assert_eq!(one.state.store_calls(), calls(0, 40), "no hop, no slot held");
}

#[actix_web::test]
async fn a_rooms_join_and_poll_are_served_without_the_hop_and_its_rules_hold() {
    let (world, ns) = (World::new(), Namespace::new());
    let ticker = Arc::new(ManualTicker::new());
    let rooms = Arc::new(CachedRooms::new(world.ports().rooms, ticker, StdDuration::from_secs(1)));
    let draft = |id: &str, concert: Uuid, opens_in_days: Option<i64>| RoomDraft {
        id: id.to_owned(),
        name: id.to_owned(),
        concerts: vec![ConcertId::from_uuid(concert)],
        opens_at: opens_in_days.map(|d| world.clock.now() + time::Duration::days(d)),
        prequeue_opens_at: None,
        draw_at_open: None,
        abandon_after_secs: None,
        settings: domain::queue::SettingsChange::default(),
    };
    world.ticketing.create_room("test", &draft("tour", world.concert, None)).unwrap();
    // Another concert for a room that opens tomorrow.
    let later = domain::catalogue::ConcertDraft {
        title: "Later".into(),
        artist: "Tester".into(),
        venue: "Hall".into(),
        schedules: vec![domain::catalogue::ScheduleDraft {
            starts_at: world.clock.now() + time::Duration::days(5),
            seats: vec![domain::catalogue::SeatDraft { number: 1, price: 500 }],
        }],
    };
    let later_concert = world.ticketing.create_concert("test", &later).unwrap().concert.id.as_uuid();
    world.ticketing.create_room("test", &draft("later", later_concert, Some(1))).unwrap();
    assert_eq!(rooms.rooms().unwrap().len(), 2, "the rooms cache is filled");
    let one = instance_with_rooms(&world, &ns.0, true, Some(rooms));
    let app = common::app(one.state.clone()).await;

    let joined =
        call(&app, post("/queue/tokens").set_json(json!({ "userId": Uuid::new_v4(), "roomId": "tour" }))).await;
    assert_eq!(joined.status, 201, "{joined:?}");
    let token = joined.body["token"].as_str().unwrap().to_owned();
    assert!(token.starts_with("tour."), "{token}");
    assert_eq!(one.state.store_calls(), calls(0, 1));
    let polled = call(&app, get("/queue/token").insert_header(bearer(&token))).await;
    assert_eq!((polled.status, polled.body["position"].as_i64()), (200, Some(1)), "{polled:?}");
    assert_eq!(one.state.store_calls(), calls(0, 1), "from the room's poll cache");

    let tour = RoomId::parse("tour").unwrap();
    let other = one
        .redis
        .line(&tour)
        .issue(UserId::from_uuid(Uuid::new_v4()), value().in_room(&tour), world.clock.now())
        .unwrap()
        .token;
    let read = call(&app, get("/queue/token").insert_header(bearer(other.value.as_str()))).await;
    assert_eq!((read.status, read.body["position"].as_i64()), (200, Some(2)), "{read:?}");
    assert_eq!(one.state.store_calls(), calls(0, 2));

    // The room's rule, decided from memory: no store call at all.
    let early =
        call(&app, post("/queue/tokens").set_json(json!({ "userId": Uuid::new_v4(), "roomId": "later" }))).await;
    assert_problem(&early, 409, "ROOM_NOT_OPEN");
    assert_eq!(one.state.store_calls(), calls(0, 2));

    // A room not in memory: looked up on the blocking path.
    let unknown =
        call(&app, post("/queue/tokens").set_json(json!({ "userId": Uuid::new_v4(), "roomId": "nowhere" }))).await;
    assert_problem(&unknown, 404, "NOT_FOUND");
    assert_eq!(one.state.store_calls(), calls(1, 2));
}
