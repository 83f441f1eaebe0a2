//! The scheduler loop on the in-memory adapters, with tokio's clock paused: the domain clock is
//! derived from tokio's (see `TokioClock`), so advancing tokio time moves both the cadence of
//! the task and the "now" its rules read. Nothing sleeps in real time.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    reason = "test code: a failed expectation should panic"
)]

mod common;

use std::sync::Arc;
use std::time::Duration as StdDuration;

use adapters_memory::MemoryStore;
use common::TokioClock;
use domain::demo;
use domain::ids::UserId;
use domain::ports::StoreError;
use domain::queue::{AdmissionPolicy, OsTokenGenerator, TokenStatus, TokenValue};
use domain::reservation::ReservationStatus;
use domain::service::{Policy, Ports, Ticketing};
use scheduler::SchedulerSettings;
use time::{Duration, OffsetDateTime};
use tokio::sync::watch;

struct World {
    store: MemoryStore,
    ports: Ports,
    ticketing: Ticketing,
    start: OffsetDateTime,
}

fn world(batch: u32, max_active: Option<u32>) -> World {
    world_with_interval(batch, max_active, 60)
}

fn world_with_interval(batch: u32, max_active: Option<u32>, interval_secs: i64) -> World {
    let start = OffsetDateTime::from_unix_timestamp(1_893_456_000).unwrap();
    let clock = Arc::new(TokioClock::starting_at(start));
    let store = MemoryStore::new();
    store.seed(&demo::catalogue(start));
    let ports = store.ports(clock, Arc::new(OsTokenGenerator));
    let policy = Policy {
        admission: AdmissionPolicy {
            batch,
            interval: Duration::seconds(interval_secs),
            active_ttl: Duration::seconds(600),
            max_active,
        },
        hold: Duration::seconds(300),
    };
    let ticketing = Ticketing::new(ports.clone(), policy);
    World { store, ports, ticketing, start }
}

fn start_scheduler(w: &World) -> (watch::Sender<bool>, tokio::task::JoinHandle<()>) {
    let (tx, rx) = watch::channel(false);
    let settings = SchedulerSettings::new(StdDuration::from_secs(1), StdDuration::from_secs(60));
    (tx, scheduler::spawn(w.ticketing.clone(), settings, rx))
}

fn issue(w: &World, n: usize) -> Vec<TokenValue> {
    (0..n).map(|_| w.ticketing.issue_token(UserId::random()).unwrap().view.token.value).collect()
}

fn stored_status(w: &World, t: &TokenValue) -> TokenStatus {
    w.ports.queue.find(t).unwrap().unwrap().status
}

fn active_count(w: &World, tokens: &[TokenValue]) -> usize {
    tokens.iter().filter(|t| stored_status(w, t) == TokenStatus::Active).count()
}

/// Lets tokio time run to `secs` (plus a little, so the tick due at `secs` has run) after start.
async fn run_until(w: &World, secs: f64) {
    let target = w.start + Duration::seconds_f64(secs) + Duration::milliseconds(500);
    let now = w.ports.clock.now();
    if target > now {
        tokio::time::sleep(StdDuration::try_from(target - now).unwrap()).await;
    }
}

#[tokio::test(start_paused = true)]
async fn admits_n_oldest_first_once_per_interval_over_several_ticks() {
    let w = world(3, None);
    let tokens = issue(&w, 10);
    let (_stop, _task) = start_scheduler(&w);

    run_until(&w, 0.0).await;
    assert_eq!(active_count(&w, &tokens), 3);
    run_until(&w, 59.0).await;
    assert_eq!(active_count(&w, &tokens), 3, "no second admission within the interval");
    run_until(&w, 60.0).await;
    assert_eq!(active_count(&w, &tokens), 6);
    run_until(&w, 120.0).await;
    assert_eq!(active_count(&w, &tokens), 9);
    run_until(&w, 180.0).await;
    assert_eq!(active_count(&w, &tokens), 10);

    // Oldest first: activation times never decrease along the line, in batches of at most 3.
    let activated: Vec<OffsetDateTime> =
        tokens.iter().map(|t| w.ports.queue.find(t).unwrap().unwrap().activated_at.unwrap()).collect();
    assert!(activated.windows(2).all(|p| p[0] <= p[1]));
    let expected: Vec<i64> = vec![0, 0, 0, 60, 60, 60, 120, 120, 120, 180];
    let got: Vec<i64> = activated.iter().map(|a| (*a - w.start).whole_seconds()).collect();
    assert_eq!(got, expected);
}

#[tokio::test(start_paused = true)]
async fn wakes_when_the_next_admission_is_due_not_a_check_period_later() {
    // Checks every 5 s, admissions every 1 s: the store's `NotDue { next_at }` and the interval
    // after an admission set the wake-up, so the cadence is M, not the check period.
    let w = world_with_interval(3, None, 1);
    let tokens = issue(&w, 9);
    let (_stop, rx) = watch::channel(false);
    let _task = scheduler::spawn(w.ticketing.clone(), SchedulerSettings { check_every: StdDuration::from_secs(5) }, rx);
    run_until(&w, 0.0).await;
    assert_eq!(active_count(&w, &tokens), 3);
    run_until(&w, 1.0).await;
    assert_eq!(active_count(&w, &tokens), 6);
    run_until(&w, 2.0).await;
    assert_eq!(active_count(&w, &tokens), 9);
}

#[tokio::test(start_paused = true)]
async fn max_active_cap_holds_admission_back_until_tokens_expire() {
    let w = world(3, Some(4));
    let tokens = issue(&w, 10);
    let (_stop, _task) = start_scheduler(&w);

    run_until(&w, 0.0).await;
    assert_eq!(active_count(&w, &tokens), 3);
    run_until(&w, 60.0).await;
    assert_eq!(active_count(&w, &tokens), 4, "the cap of 4 leaves room for one");
    run_until(&w, 599.0).await;
    assert_eq!(active_count(&w, &tokens), 4, "no room until someone leaves");
    // At 600 s the first three reach their TTL: they expire and three more get in.
    run_until(&w, 600.0).await;
    assert_eq!(active_count(&w, &tokens), 4);
    for t in &tokens[..3] {
        assert_eq!(stored_status(&w, t), TokenStatus::Expired);
    }
    for t in &tokens[4..7] {
        assert_eq!(stored_status(&w, t), TokenStatus::Active);
    }
}

#[tokio::test(start_paused = true)]
async fn expires_active_tokens_at_their_ttl() {
    let w = world(3, None);
    let tokens = issue(&w, 1);
    let (_stop, _task) = start_scheduler(&w);
    run_until(&w, 0.0).await;
    assert_eq!(stored_status(&w, &tokens[0]), TokenStatus::Active);
    run_until(&w, 599.0).await;
    assert_eq!(stored_status(&w, &tokens[0]), TokenStatus::Active);
    run_until(&w, 600.0).await;
    assert_eq!(stored_status(&w, &tokens[0]), TokenStatus::Expired);
}

#[tokio::test(start_paused = true)]
async fn releases_a_hold_at_its_exact_deadline() {
    let w = world(3, None);
    let tokens = issue(&w, 1);
    let (_stop, _task) = start_scheduler(&w);
    run_until(&w, 0.0).await;
    let who = w.ticketing.authorize(tokens[0].as_str()).unwrap();
    let schedule = demo::catalogue(w.start).schedules[0].clone();
    let r = w.ticketing.reserve(&who, schedule.id, schedule.seats[0].id).unwrap();
    let deadline = (r.held_until - w.start).as_seconds_f64();
    // Ticks run on whole seconds; the first one at or after the deadline closes the hold.
    let closing_tick = deadline.ceil();

    run_until(&w, closing_tick - 1.0).await;
    assert_eq!(w.ports.reservations.find(r.id).unwrap().unwrap().status, ReservationStatus::Held);
    run_until(&w, closing_tick).await;
    assert_eq!(w.ports.reservations.find(r.id).unwrap().unwrap().status, ReservationStatus::Expired);
}

#[tokio::test(start_paused = true)]
async fn a_failing_store_skips_nothing_for_good() {
    let w = world(3, None);
    let tokens = issue(&w, 6);
    w.store.set_failure(Some(StoreError::Unavailable("test: database down".into())));
    let (_stop, _task) = start_scheduler(&w);
    run_until(&w, 30.0).await;
    w.store.set_failure(None);
    assert_eq!(active_count(&w, &tokens), 0);
    // The first tick after recovery admits the first batch; the next interval the rest.
    run_until(&w, 31.0).await;
    assert_eq!(active_count(&w, &tokens), 3);
    run_until(&w, 91.0).await;
    assert_eq!(active_count(&w, &tokens), 6);
}

#[tokio::test(start_paused = true)]
async fn stops_between_ticks_on_shutdown() {
    let w = world(3, None);
    let (stop, task) = start_scheduler(&w);
    run_until(&w, 5.0).await;
    stop.send(true).unwrap();
    tokio::time::timeout(StdDuration::from_secs(5), task).await.expect("scheduler stops").unwrap();
    // Dropping the sender stops it too.
    let (stop, task) = start_scheduler(&w);
    drop(stop);
    tokio::time::timeout(StdDuration::from_secs(5), task).await.expect("scheduler stops").unwrap();
}

#[test]
fn check_interval_is_capped_by_the_admission_interval() {
    let s = SchedulerSettings::new(StdDuration::from_secs(5), StdDuration::from_secs(1));
    assert_eq!(s.check_every, StdDuration::from_secs(1));
    let s = SchedulerSettings::new(StdDuration::from_millis(1), StdDuration::from_secs(60));
    assert_eq!(s.check_every, StdDuration::from_millis(10));
}
