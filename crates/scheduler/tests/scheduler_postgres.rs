//! Several scheduler instances against one PostgreSQL database.
//!
//! Each "instance" is its own `PgStore` (own pool) and `Ticketing`, as separate processes
//! would have. tokio's clock is paused and both the database's clock (injected into the store,
//! standing in for `now()`) and the instances' clocks follow it, so their timers and the times
//! their SQL uses move together without sleeping in real time; the blocking database calls
//! hold tokio's auto-advance back while they run. One instance's own clock may run ahead: the
//! store's clock still decides admission.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    reason = "test code: a failed expectation should panic"
)]

mod common;

use std::sync::{Arc, Barrier};
use std::time::Duration as StdDuration;

use adapters_local::OsRandom;
use adapters_postgres::testing::TestDatabase;
use common::TokioClock;
use domain::catalogue::{Concert, NewConcert, NewSchedule, Seat};
use domain::clock::{Clock, ManualClock, SkewedClock};
use domain::error::PayError;
use domain::idempotency::Outcome;
use domain::ids::{ConcertId, ScheduleId, SeatId, UserId};
use domain::money::Won;
use domain::queue::{QueueToken, SettingsChange, SettingsPatch};
use domain::random::Randomness;
use domain::reservation::ReservationStatus;
use domain::service::{Policy, Ticketing};
use scheduler::SchedulerSettings;
use time::{Duration, OffsetDateTime};
use tokio::sync::watch;

const N: u32 = 3;
const M_SECS: i64 = 2;

/// An instance: its own pool on `db`, the database's clock `store_clock`, its own `clock`.
fn instance(db: &TestDatabase, store_clock: Arc<dyn Clock>, clock: Arc<dyn Clock>) -> Ticketing {
    let store = db.store().unwrap().with_clock(store_clock);
    Ticketing::new(store.ports(clock, Arc::new(OsRandom)), Policy::default())
}

/// N every M, ACTIVE for an hour (stored once, seen by every instance).
fn configure(t: &Ticketing) {
    let patch = SettingsPatch::new(SettingsChange {
        paused: Some(false),
        admit_batch: Some(i64::from(N)),
        admit_interval_secs: Some(M_SECS),
        active_ttl_secs: Some(3_600),
        max_active: Some(None),
    })
    .unwrap();
    t.update_queue("test", &patch).unwrap();
}

fn seed(t: &Ticketing, now: OffsetDateTime) -> NewSchedule {
    let concert = ConcertId::from_uuid(OsRandom.uuid());
    let schedule = ScheduleId::from_uuid(OsRandom.uuid());
    let seats = (1..=20)
        .map(|number| Seat {
            id: SeatId::from_uuid(OsRandom.uuid()),
            schedule_id: schedule,
            number,
            price: Won::new(1_000),
        })
        .collect();
    let new = NewSchedule { id: schedule, concert_id: concert, starts_at: now + Duration::days(7), seats };
    let c = NewConcert {
        concert: Concert { id: concert, title: "T".into(), artist: String::new(), venue: String::new() },
        schedules: vec![new.clone()],
    };
    assert!(t.ports().catalogue.create_concert(&c, None).unwrap());
    new
}

fn issue(t: &Ticketing, n: usize) -> Vec<QueueToken> {
    (0..n).map(|_| t.issue_token(UserId::from_uuid(OsRandom.uuid())).unwrap().view.token).collect()
}

/// Checks the admission record: strictly FIFO, each batch at most N, batches at least M apart,
/// none in the store's future. Returns how many were admitted.
fn assert_admission_contract(t: &Ticketing, tokens: &[QueueToken], now: OffsetDateTime) -> usize {
    let activated: Vec<Option<OffsetDateTime>> =
        tokens.iter().map(|tk| t.ports().queue.find(&tk.value).unwrap().unwrap().activated_at).collect();
    let admitted = activated.iter().take_while(|a| a.is_some()).count();
    assert!(activated[admitted..].iter().all(Option::is_none), "admission skipped a place in line: {activated:?}");
    let times: Vec<OffsetDateTime> = activated.iter().flatten().copied().collect();
    assert!(times.windows(2).all(|w| w[0] <= w[1]), "admitted out of order");
    assert!(times.iter().all(|at| *at <= now), "an activation in the store's future");
    let mut batches: Vec<(OffsetDateTime, usize)> = Vec::new();
    for at in times {
        match batches.last_mut() {
            Some((t, n)) if *t == at => *n += 1,
            _ => batches.push((at, 1)),
        }
    }
    for (at, n) in &batches {
        assert!(*n <= N as usize, "{n} admitted at {at}, above N = {N}");
    }
    for w in batches.windows(2) {
        assert!(w[1].0 - w[0].0 >= Duration::seconds(M_SECS), "admissions {} and {} less than M apart", w[0].0, w[1].0);
    }
    admitted
}

async fn run_two_instances(offset: StdDuration, check_every: StdDuration, skew: Duration) {
    let db = TestDatabase::create().unwrap();
    let start = OffsetDateTime::from_unix_timestamp(1_893_456_000).unwrap();
    let clock: Arc<dyn Clock> = Arc::new(TokioClock::starting_at(start));
    let skewed: Arc<dyn Clock> = Arc::new(SkewedClock::new(clock.clone(), skew));
    let a = instance(&db, clock.clone(), clock.clone());
    let b = instance(&db, clock.clone(), skewed);
    configure(&a);
    let tokens = issue(&a, 20);
    let settings = SchedulerSettings::new(check_every, StdDuration::from_secs(M_SECS as u64));
    let (stop, rx) = watch::channel(false);
    let task_a = scheduler::spawn(a.clone(), settings, rx.clone());
    tokio::time::sleep(offset).await;
    let task_b = scheduler::spawn(b, settings, rx);
    // Eight intervals: enough for all 20 (7 batches of 3), with both instances ticking.
    tokio::time::sleep(StdDuration::from_secs(8 * M_SECS as u64)).await;
    stop.send(true).unwrap();
    task_a.await.unwrap();
    task_b.await.unwrap();
    assert_eq!(assert_admission_contract(&a, &tokens, clock.now()), 20, "everyone admitted in the end");
}

#[tokio::test(start_paused = true)]
async fn two_instances_started_together_admit_at_most_n_per_interval() {
    run_two_instances(StdDuration::ZERO, StdDuration::from_millis(250), Duration::ZERO).await;
}

#[tokio::test(start_paused = true)]
async fn two_instances_offset_by_half_an_interval_admit_at_most_n_per_interval() {
    // Each wakes once per interval, half an interval apart: the case where row locking alone
    // admits 2N per interval.
    run_two_instances(StdDuration::from_secs(1), StdDuration::from_secs(M_SECS as u64), Duration::ZERO).await;
}

#[tokio::test(start_paused = true)]
async fn an_instance_whose_clock_runs_30_s_ahead_still_admits_at_most_n_per_interval() {
    run_two_instances(StdDuration::from_millis(500), StdDuration::from_millis(250), Duration::seconds(30)).await;
}

/// Both instances run a tick at the same instant from real threads: every expiry and every hold
/// release is reported by exactly one of them.
#[test]
fn concurrent_ticks_expire_each_token_and_release_each_hold_once() {
    let db = TestDatabase::create().unwrap();
    let clock = ManualClock::at_epoch();
    let shared: Arc<dyn Clock> = Arc::new(clock.clone());
    let a = instance(&db, shared.clone(), shared.clone());
    let b = instance(&db, shared.clone(), shared);
    configure(&a);
    let schedule = seed(&a, clock.now());

    // 12 users admitted (four ticks of 3), each holding one seat.
    let tokens = issue(&a, 12);
    for _ in 0..4 {
        a.admit().unwrap();
        clock.advance(Duration::seconds(M_SECS));
    }
    let mut holds = Vec::new();
    for (i, t) in tokens.iter().enumerate() {
        let who = a.authorize(t.value.as_str()).unwrap();
        holds.push(a.reserve(&who, schedule.id, schedule.seats[i].id).unwrap().id);
    }
    // Past every hold and every token's TTL.
    clock.advance(Duration::seconds(3_600));

    let barrier = Barrier::new(2);
    let (ra, rb) = std::thread::scope(|s| {
        let ha = s.spawn(|| {
            barrier.wait();
            a.tick().unwrap()
        });
        let hb = s.spawn(|| {
            barrier.wait();
            b.tick().unwrap()
        });
        (ha.join().unwrap(), hb.join().unwrap())
    });
    assert_eq!(ra.holds_released + rb.holds_released, 12, "{ra:?} {rb:?}");
    assert_eq!(ra.tokens_expired + rb.tokens_expired, 12, "{ra:?} {rb:?}");
    for id in holds {
        assert_eq!(a.ports().reservations.find(id).unwrap().unwrap().status, ReservationStatus::Expired);
    }
    assert!(adapters_postgres::invariants::check(&db.store().unwrap()).unwrap().is_empty());
}

/// A payment (its instance's clock just before the deadline) races the hold release of another
/// instance (its clock at the deadline), many times: exactly one of them wins each time.
#[test]
fn a_payment_racing_the_hold_release_at_the_deadline_has_exactly_one_winner() {
    let db = TestDatabase::create().unwrap();
    let base = ManualClock::at_epoch().now();
    let payer_clock = ManualClock::new(base);
    let sweeper_clock = ManualClock::new(base);
    let payer = instance(&db, Arc::new(payer_clock.clone()), Arc::new(payer_clock.clone()));
    let sweeper = instance(&db, Arc::new(sweeper_clock.clone()), Arc::new(sweeper_clock.clone()));
    configure(&payer);
    let schedule = seed(&payer, base);

    let rounds: usize = 12;
    let tokens = issue(&payer, rounds);
    for _ in 0..rounds.div_ceil(N as usize) {
        payer.admit().unwrap();
        payer_clock.advance(Duration::seconds(M_SECS));
    }
    let (mut paid, mut released) = (0, 0);
    for (i, token) in tokens.iter().enumerate() {
        let who = payer.authorize(token.value.as_str()).unwrap();
        payer.charge(token.user_id, schedule.seats[i].price.get(), None).unwrap();
        let r = payer.reserve(&who, schedule.id, schedule.seats[i].id).unwrap();
        payer_clock.set(r.held_until - Duration::microseconds(1));
        sweeper_clock.set(r.held_until);

        let barrier = Barrier::new(2);
        let (pay, swept) = std::thread::scope(|s| {
            let p = s.spawn(|| {
                barrier.wait();
                payer.pay(token.value.as_str(), r.id, None)
            });
            let w = s.spawn(|| {
                barrier.wait();
                sweeper.release_holds().unwrap()
            });
            (p.join().unwrap(), w.join().unwrap())
        });
        match (&pay, swept) {
            (Ok(Outcome::Fresh { .. }), 0) => paid += 1,
            (Err(PayError::HoldExpired), 1) => released += 1,
            other => panic!("round {i}: both or neither won: {other:?}"),
        }
        let stored = payer.ports().reservations.find(r.id).unwrap().unwrap().status;
        assert_eq!(stored, if pay.is_ok() { ReservationStatus::Paid } else { ReservationStatus::Expired });
        payer_clock.set(r.held_until - Duration::seconds(300));
    }
    assert_eq!(paid + released, rounds);
    assert!(adapters_postgres::invariants::check(&db.store().unwrap()).unwrap().is_empty());
}
