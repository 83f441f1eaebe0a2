//! The scheduler loop on the in-memory store, with tokio's clock paused and a manual domain (and
//! store) clock. Each tick is observed through [`scheduler::spawn_observed`]'s report channel:
//! a test waits for the next tick's report, checks it and the store, moves the manual clock,
//! and waits for the next one. Nothing sleeps in real time, and "nothing happened" is asserted
//! on a tick that is known to have run.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    reason = "test code: a failed expectation should panic"
)]

use std::sync::Arc;
use std::time::Duration as StdDuration;

use adapters_local::OsRandom;
use adapters_memory::MemoryStore;
use domain::catalogue::{Concert, NewConcert, NewSchedule, Seat};
use domain::clock::{Clock, ManualClock, SkewedClock};
use domain::idempotency::{Effect, IdempotencyKey, IdempotencyRequest, StoredResponse};
use domain::ids::{ConcertId, ScheduleId, SeatId, UserId};
use domain::money::Won;
use domain::ports::StoreError;
use domain::queue::{
    AdmissionOutcome, AdmissionPolicy, QueueSettings, QueueToken, SettingsChange, SettingsPatch, TokenStatus,
};
use domain::random::Randomness;
use domain::reservation::ReservationStatus;
use domain::service::{Policy, Ports, TickReport, Ticketing};
use metrics_exporter_prometheus::PrometheusBuilder;
use scheduler::{SchedulerSettings, TickError, TickResult};
use time::{Duration, OffsetDateTime};
use tokio::sync::{mpsc, watch};
use tokio::task::JoinHandle;

struct World {
    store: MemoryStore,
    clock: ManualClock,
    ports: Ports,
    ticketing: Ticketing,
    start: OffsetDateTime,
}

fn admission(batch: u32, max_active: Option<u32>) -> AdmissionPolicy {
    AdmissionPolicy {
        batch,
        interval: Duration::seconds(60),
        active_ttl: Duration::seconds(600),
        max_active,
        abandon_after: None,
    }
}

fn world(admission: AdmissionPolicy) -> World {
    world_with(admission, Policy::default())
}

fn world_with(admission: AdmissionPolicy, policy: Policy) -> World {
    let clock = ManualClock::at_epoch();
    let start = clock.now();
    let store = MemoryStore::with_settings(QueueSettings { paused: false, admission });
    let ports = store.ports(Arc::new(clock.clone()), Arc::new(OsRandom));
    let ticketing = Ticketing::new(ports.clone(), policy);
    World { store, clock, ports, ticketing, start }
}

/// A running scheduler and the reports of its ticks.
struct Running {
    stop: watch::Sender<bool>,
    task: JoinHandle<()>,
    reports: mpsc::UnboundedReceiver<TickResult>,
}

impl Running {
    /// The result of the next tick, once it has run.
    async fn next(&mut self) -> TickResult {
        self.reports.recv().await.expect("the scheduler runs")
    }

    /// The report of the next tick, which must succeed.
    async fn tick(&mut self) -> TickReport {
        self.next().await.expect("the tick succeeds")
    }
}

fn start(ticketing: &Ticketing, check_every: StdDuration) -> Running {
    let (stop, rx) = watch::channel(false);
    let (tx, reports) = mpsc::unbounded_channel();
    let task = scheduler::spawn_observed(ticketing.clone(), SchedulerSettings { check_every }, rx, tx);
    Running { stop, task, reports }
}

impl World {
    fn issue(&self, n: usize) -> Vec<QueueToken> {
        (0..n).map(|_| self.ticketing.issue_token(UserId::from_uuid(OsRandom.uuid())).unwrap().view.token).collect()
    }

    fn stored(&self, t: &QueueToken) -> QueueToken {
        self.ports.queue.find(&t.value).unwrap().unwrap()
    }

    fn active(&self, tokens: &[QueueToken]) -> usize {
        tokens.iter().filter(|t| self.stored(t).status == TokenStatus::Active).count()
    }

    fn update(&self, paused: Option<bool>, batch: Option<i64>) {
        self.ticketing
            .update_queue(
                "test",
                &SettingsPatch::new(SettingsChange { paused, admit_batch: batch, ..SettingsChange::default() })
                    .unwrap(),
            )
            .unwrap();
    }

    /// A concert with one schedule a week ahead, seats 1 to 10.
    fn seed(&self) -> NewSchedule {
        let concert = ConcertId::from_uuid(OsRandom.uuid());
        let schedule = ScheduleId::from_uuid(OsRandom.uuid());
        let seats = (1..=10)
            .map(|number| Seat {
                id: SeatId::from_uuid(OsRandom.uuid()),
                schedule_id: schedule,
                number,
                price: Won::new(1_000),
            })
            .collect();
        let new = NewSchedule { id: schedule, concert_id: concert, starts_at: self.start + Duration::days(7), seats };
        let c = NewConcert {
            concert: Concert { id: concert, title: "T".into(), artist: String::new(), venue: String::new() },
            schedules: vec![new.clone()],
        };
        assert!(self.ports.catalogue.create_concert(&c, None).unwrap());
        new
    }
}

#[tokio::test(start_paused = true)]
async fn admits_n_oldest_first_once_per_interval_on_the_stores_clock() {
    let w = world(admission(3, None));
    let tokens = w.issue(10);
    let mut run = start(&w.ticketing, StdDuration::from_secs(1));

    assert_eq!(run.tick().await.admission, AdmissionOutcome::Admitted(3));
    w.clock.advance(Duration::seconds(59));
    assert_eq!(run.tick().await.admission, AdmissionOutcome::NotDue { wait: Duration::seconds(1) });
    assert_eq!(w.active(&tokens), 3, "no second admission within the interval");
    w.clock.set(w.start + Duration::seconds(60));
    assert_eq!(run.tick().await.admission, AdmissionOutcome::Admitted(3));
    w.clock.set(w.start + Duration::seconds(120));
    assert_eq!(run.tick().await.admission, AdmissionOutcome::Admitted(3));
    w.clock.set(w.start + Duration::seconds(180));
    assert_eq!(run.tick().await.admission, AdmissionOutcome::Admitted(1));
    assert_eq!(w.active(&tokens), 10);

    // Oldest first, in batches of at most 3, on the store's clock.
    let got: Vec<i64> = tokens.iter().map(|t| (w.stored(t).activated_at.unwrap() - w.start).whole_seconds()).collect();
    assert_eq!(got, vec![0, 0, 0, 60, 60, 60, 120, 120, 120, 180]);
}

#[tokio::test(start_paused = true)]
async fn a_paused_room_admits_nobody_and_changed_settings_apply_at_the_next_check() {
    let w = world(admission(3, None));
    let tokens = w.issue(10);
    w.update(Some(true), None);
    let mut run = start(&w.ticketing, StdDuration::from_secs(1));
    assert_eq!(run.tick().await.admission, AdmissionOutcome::Paused);
    w.clock.advance(Duration::seconds(120));
    assert_eq!(run.tick().await.admission, AdmissionOutcome::Paused);
    assert_eq!(w.active(&tokens), 0);

    // Resumed with a bigger batch: the very next check uses both.
    w.update(Some(false), Some(5));
    assert_eq!(run.tick().await.admission, AdmissionOutcome::Admitted(5));
    assert_eq!(w.active(&tokens), 5);
}

#[tokio::test(start_paused = true)]
async fn the_max_active_cap_holds_admission_back_until_tokens_expire() {
    let w = world(admission(3, Some(4)));
    let tokens = w.issue(10);
    let mut run = start(&w.ticketing, StdDuration::from_secs(1));

    assert_eq!(run.tick().await.admission, AdmissionOutcome::Admitted(3));
    w.clock.set(w.start + Duration::seconds(60));
    assert_eq!(run.tick().await.admission, AdmissionOutcome::Admitted(1), "the cap of 4 leaves room for one");
    w.clock.set(w.start + Duration::seconds(599));
    assert_eq!(run.tick().await.admission, AdmissionOutcome::Admitted(0), "no room until someone leaves");
    // At 600 s the first three reach their TTL: three more get in, and the three expire.
    w.clock.set(w.start + Duration::seconds(600));
    let report = run.tick().await;
    assert_eq!((report.admission, report.tokens_expired), (AdmissionOutcome::Admitted(3), 3));
    assert!(tokens[..3].iter().all(|t| w.stored(t).status == TokenStatus::Expired));
    assert!(tokens[3..7].iter().all(|t| w.stored(t).status == TokenStatus::Active));
}

#[tokio::test(start_paused = true)]
async fn expires_active_tokens_at_their_ttl() {
    let w = world(admission(3, None));
    let tokens = w.issue(1);
    let mut run = start(&w.ticketing, StdDuration::from_secs(1));
    assert_eq!(run.tick().await.admission, AdmissionOutcome::Admitted(1));
    w.clock.set(w.start + Duration::seconds(600) - Duration::microseconds(1));
    assert_eq!(run.tick().await.tokens_expired, 0);
    assert_eq!(w.stored(&tokens[0]).status, TokenStatus::Active);
    w.clock.set(w.start + Duration::seconds(600));
    assert_eq!(run.tick().await.tokens_expired, 1);
    assert_eq!(w.stored(&tokens[0]).status, TokenStatus::Expired);
}

#[tokio::test(start_paused = true)]
async fn releases_a_hold_at_its_exact_deadline() {
    let w = world(admission(3, None));
    let schedule = w.seed();
    let tokens = w.issue(1);
    let mut run = start(&w.ticketing, StdDuration::from_secs(1));
    assert_eq!(run.tick().await.admission, AdmissionOutcome::Admitted(1));
    let who = w.ticketing.authorize(tokens[0].value.as_str()).unwrap();
    let r = w.ticketing.reserve(&who, schedule.id, schedule.seats[0].id).unwrap();

    w.clock.set(r.held_until - Duration::microseconds(1));
    assert_eq!(run.tick().await.holds_released, 0);
    assert_eq!(w.ports.reservations.find(r.id).unwrap().unwrap().status, ReservationStatus::Held);
    w.clock.set(r.held_until);
    assert_eq!(run.tick().await.holds_released, 1);
    assert_eq!(w.ports.reservations.find(r.id).unwrap().unwrap().status, ReservationStatus::Expired);
}

fn render(effect: &Effect) -> StoredResponse {
    StoredResponse { status: 200, body: format!("{effect:?}") }
}

#[tokio::test(start_paused = true)]
async fn purges_idempotency_records_once_they_expire() {
    let policy = Policy { idempotency_ttl: Duration::seconds(100), ..Policy::default() };
    let w = world_with(admission(3, None), policy);
    let user = UserId::from_uuid(OsRandom.uuid());
    let key = IdempotencyKey::parse("k").unwrap();
    w.ticketing.charge(user, 10, Some(IdempotencyRequest { key: key.clone(), render: &render })).unwrap();
    let mut run = start(&w.ticketing, StdDuration::from_secs(1));
    w.clock.set(w.start + Duration::seconds(100) - Duration::microseconds(1));
    assert_eq!(run.tick().await.keys_purged, 0);
    w.clock.set(w.start + Duration::seconds(100));
    assert_eq!(run.tick().await.keys_purged, 1);
    assert_eq!(w.ports.idempotency.find(user, &key, w.start).unwrap(), None, "deleted, not just expired");
}

#[tokio::test(start_paused = true)]
async fn a_failing_store_skips_nothing_for_good_and_every_tick_is_measured() {
    let recorder = PrometheusBuilder::new().build_recorder();
    let metrics = recorder.handle();
    // The test runtime has one thread, so the scheduler task records into this recorder.
    let _guard = metrics::set_default_local_recorder(&recorder);

    let w = world(admission(3, None));
    let tokens = w.issue(6);
    w.store.set_failure(Some(StoreError::Unavailable("test: database down".into())));
    let mut run = start(&w.ticketing, StdDuration::from_secs(1));
    let down = Err(TickError::Store(StoreError::Unavailable("test: database down".into())));
    assert_eq!(run.next().await, down);
    w.clock.advance(Duration::seconds(30));
    assert_eq!(run.next().await, down);

    w.store.set_failure(None);
    assert_eq!(w.active(&tokens), 0, "the failed ticks admitted nobody");
    assert_eq!(run.tick().await.admission, AdmissionOutcome::Admitted(3), "the first tick after recovery");
    w.clock.advance(Duration::seconds(60));
    assert_eq!(run.tick().await.admission.admitted(), 3);
    assert_eq!(w.active(&tokens), 6);

    let text = metrics.render();
    assert!(text.contains("queue_tokens_admitted_total{room=\"main\"} 6"), "{text}");
    assert!(text.contains("store_errors_total{kind=\"unavailable\"} 2"), "{text}");
    assert!(text.contains("scheduler_tick_duration_seconds_count 4"), "{text}");
}

#[tokio::test(start_paused = true)]
async fn two_instances_one_with_a_clock_30_s_ahead_admit_at_most_n_per_interval() {
    let w = world(AdmissionPolicy { batch: 2, interval: Duration::seconds(20), ..admission(2, None) });
    let tokens = w.issue(40);
    let skewed_clock = Arc::new(SkewedClock::new(Arc::new(w.clock.clone()), Duration::seconds(30)));
    let skewed = Ticketing::new(Ports { clock: skewed_clock, ..w.ports.clone() }, Policy::default());
    let check = StdDuration::from_secs(5);
    let (mut a, mut b) = (start(&w.ticketing, check), start(&skewed, check));
    for _ in 0..24 {
        let _ = a.tick().await;
        let _ = b.tick().await;
        w.clock.advance(Duration::seconds(5));
    }
    let mut batches: Vec<(OffsetDateTime, usize)> = Vec::new();
    for t in &tokens {
        let Some(at) = w.stored(t).activated_at else { continue };
        match batches.last_mut() {
            Some((last, n)) if *last == at => *n += 1,
            _ => batches.push((at, 1)),
        }
    }
    assert!(batches.iter().all(|(_, n)| *n <= 2), "{batches:?}");
    assert!(batches.windows(2).all(|p| p[1].0 - p[0].0 >= Duration::seconds(20)), "{batches:?}");
    assert!(batches.iter().all(|(at, _)| *at < w.start + Duration::seconds(120)), "no activation in the future");
    assert_eq!(batches.len(), 6, "0, 20, ..., 100 s: {batches:?}");
}

#[tokio::test(start_paused = true)]
async fn stops_between_ticks_on_shutdown() {
    let w = world(admission(3, None));
    let mut run = start(&w.ticketing, StdDuration::from_secs(1));
    let _ = run.tick().await;
    run.stop.send(true).unwrap();
    tokio::time::timeout(StdDuration::from_secs(5), run.task).await.expect("scheduler stops").unwrap();
    // Dropping the sender stops it too.
    let run = start(&w.ticketing, StdDuration::from_secs(1));
    drop(run.stop);
    tokio::time::timeout(StdDuration::from_secs(5), run.task).await.expect("scheduler stops").unwrap();
}
