//! Several scheduler instances against one PostgreSQL database.
//!
//! Each "instance" is its own `PgStore` (own pool) and `Ticketing`, as separate processes
//! would have. tokio's clock is paused and the domain clock follows it, so the instances' timers
//! and the "now" their SQL receives move together without sleeping in real time; the blocking
//! database calls hold tokio's auto-advance back while they run.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    reason = "test code: a failed expectation should panic"
)]

mod common;

use std::sync::{Arc, Barrier};
use std::time::Duration as StdDuration;

use adapters_postgres::testing::TestDatabase;
use adapters_postgres::PgStore;
use common::TokioClock;
use diesel::prelude::*;
use domain::clock::{Clock, ManualClock};
use domain::demo;
use domain::ids::UserId;
use domain::queue::{AdmissionPolicy, OsTokenGenerator};
use domain::reservation::ReservationStatus;
use domain::service::{Policy, Ticketing};
use scheduler::SchedulerSettings;
use time::{Duration, OffsetDateTime};
use tokio::sync::watch;

const N: u32 = 3;
const M_SECS: i64 = 2;

fn policy() -> Policy {
    Policy {
        admission: AdmissionPolicy {
            batch: N,
            interval: Duration::seconds(M_SECS),
            active_ttl: Duration::seconds(3600),
            max_active: None,
        },
        hold: Duration::seconds(300),
    }
}

fn instance(db: &TestDatabase, clock: Arc<dyn Clock>) -> Ticketing {
    let store: PgStore = db.store().unwrap();
    Ticketing::new(store.ports(clock, Arc::new(OsTokenGenerator)), policy())
}

#[derive(QueryableByName, Debug)]
struct Activation {
    #[diesel(sql_type = diesel::sql_types::BigInt)]
    seq: i64,
    #[diesel(sql_type = diesel::sql_types::Nullable<diesel::sql_types::Timestamptz>)]
    activated_at: Option<OffsetDateTime>,
}

fn stored_status(db: &TestDatabase, id: uuid::Uuid) -> ReservationStatus {
    #[derive(QueryableByName)]
    struct Row {
        #[diesel(sql_type = diesel::sql_types::Text)]
        status: String,
    }
    let mut conn = PgConnection::establish(&db.url()).unwrap();
    let row: Row = diesel::sql_query("SELECT status FROM reservations WHERE id = $1")
        .bind::<diesel::sql_types::Uuid, _>(id)
        .get_result(&mut conn)
        .unwrap();
    ReservationStatus::parse(&row.status).unwrap()
}

fn activations(db: &TestDatabase) -> Vec<Activation> {
    let mut conn = PgConnection::establish(&db.url()).unwrap();
    diesel::sql_query("SELECT seq, activated_at FROM queue_tokens ORDER BY seq").load(&mut conn).unwrap()
}

/// Checks the admission record: strictly FIFO, each admission batch at most N, batches at least
/// M apart, no token admitted twice (a token has one activation time). Returns how many were admitted.
fn assert_admission_contract(rows: &[Activation]) -> usize {
    let admitted: Vec<&Activation> = rows.iter().filter(|r| r.activated_at.is_some()).collect();
    // FIFO: the admitted tokens are exactly a prefix of the line, in order of activation.
    for (i, r) in admitted.iter().enumerate() {
        assert_eq!(r.seq, i as i64 + 1, "admission skipped a place in line");
    }
    assert!(admitted.windows(2).all(|w| w[0].activated_at <= w[1].activated_at), "admitted out of order");
    let mut batches: Vec<(OffsetDateTime, usize)> = Vec::new();
    for r in &admitted {
        let at = r.activated_at.unwrap();
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
    admitted.len()
}

async fn run_two_instances(offset: StdDuration, check_every: StdDuration) {
    let db = TestDatabase::create().unwrap();
    let start = OffsetDateTime::from_unix_timestamp(1_893_456_000).unwrap();
    let clock: Arc<dyn Clock> = Arc::new(TokioClock::starting_at(start));
    let a = instance(&db, clock.clone());
    let b = instance(&db, clock.clone());
    for _ in 0..20 {
        a.issue_token(UserId::random()).unwrap();
    }
    let settings = SchedulerSettings::new(check_every, StdDuration::from_secs(M_SECS as u64));
    let (stop, rx) = watch::channel(false);
    let task_a = scheduler::spawn(a, settings, rx.clone());
    tokio::time::sleep(offset).await;
    let task_b = scheduler::spawn(b, settings, rx);
    // Eight intervals: enough for all 20 (7 batches of 3), with both instances ticking.
    tokio::time::sleep(StdDuration::from_secs(8 * M_SECS as u64)).await;
    stop.send(true).unwrap();
    task_a.await.unwrap();
    task_b.await.unwrap();
    assert_eq!(assert_admission_contract(&activations(&db)), 20, "everyone admitted in the end");
}

#[tokio::test(start_paused = true)]
async fn two_instances_started_together_admit_at_most_n_per_interval() {
    run_two_instances(StdDuration::ZERO, StdDuration::from_millis(250)).await;
}

#[tokio::test(start_paused = true)]
async fn two_instances_offset_by_half_an_interval_admit_at_most_n_per_interval() {
    // Each wakes once per interval, half an interval apart: the case where row locking alone
    // admits 2N per interval.
    run_two_instances(StdDuration::from_secs(1), StdDuration::from_secs(M_SECS as u64)).await;
}

/// Both instances run a tick at the same instant from real threads, repeatedly: every expiry and
/// every hold release is reported by exactly one of them.
#[test]
fn concurrent_ticks_expire_each_token_and_release_each_hold_once() {
    let db = TestDatabase::create().unwrap();
    let clock = ManualClock::at_epoch();
    let a = instance(&db, Arc::new(clock.clone()));
    let b = instance(&db, Arc::new(clock.clone()));
    db.store().unwrap().seed(&demo::catalogue(clock.now())).unwrap();
    let schedule = demo::catalogue(clock.now()).schedules[0].clone();

    // 12 users admitted (four ticks of 3), each holding one seat.
    let users: Vec<_> = (0..12).map(|_| a.issue_token(UserId::random()).unwrap().view.token.value).collect();
    for _ in 0..4 {
        a.admit().unwrap();
        clock.advance(Duration::seconds(M_SECS));
    }
    let mut holds = Vec::new();
    for (i, t) in users.iter().enumerate() {
        let who = a.authorize(t.as_str()).unwrap();
        holds.push(a.reserve(&who, schedule.id, schedule.seats[i].id).unwrap().id);
    }
    // Past every hold and every token's TTL.
    clock.advance(Duration::seconds(3600));

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
        assert_eq!(stored_status(&db, id.as_uuid()), ReservationStatus::Expired);
    }
    assert!(adapters_postgres::invariants::check(&db.store().unwrap()).unwrap().is_empty());
}

/// A payment (its clock just before the deadline) races the hold release of another instance
/// (its clock at the deadline), many times: exactly one of them wins each time.
#[test]
fn a_payment_racing_the_hold_release_at_the_deadline_has_exactly_one_winner() {
    let db = TestDatabase::create().unwrap();
    let base = ManualClock::at_epoch().now();
    let payer_clock = ManualClock::new(base);
    let sweeper_clock = ManualClock::new(base);
    let payer = instance(&db, Arc::new(payer_clock.clone()));
    let sweeper = instance(&db, Arc::new(sweeper_clock.clone()));
    let store = db.store().unwrap();
    store.seed(&demo::catalogue(base)).unwrap();
    let schedule = demo::catalogue(base).schedules[0].clone();

    let rounds: usize = 12;
    let users: Vec<_> = (0..rounds).map(|_| payer.issue_token(UserId::random()).unwrap().view.token).collect();
    for _ in 0..rounds.div_ceil(N as usize) {
        payer.admit().unwrap();
        payer_clock.advance(Duration::seconds(M_SECS));
    }
    let (mut paid, mut released) = (0, 0);
    for (i, token) in users.iter().enumerate() {
        let who = payer.authorize(token.value.as_str()).unwrap();
        payer.charge(token.user_id, schedule.seats[i].price.get()).unwrap();
        let r = payer.reserve(&who, schedule.id, schedule.seats[i].id).unwrap();
        payer_clock.set(r.held_until - Duration::microseconds(1));
        sweeper_clock.set(r.held_until);

        let barrier = Barrier::new(2);
        let (pay, swept) = std::thread::scope(|s| {
            let p = s.spawn(|| {
                barrier.wait();
                payer.pay(&who, r.id)
            });
            let w = s.spawn(|| {
                barrier.wait();
                sweeper.release_holds().unwrap()
            });
            (p.join().unwrap(), w.join().unwrap())
        });
        match (&pay, swept) {
            (Ok(_), 0) => paid += 1,
            (Err(domain::error::PayError::HoldExpired), 1) => released += 1,
            other => panic!("round {i}: both or neither won: {other:?}"),
        }
        let stored = stored_status(&db, r.id.as_uuid());
        assert_eq!(stored, if pay.is_ok() { ReservationStatus::Paid } else { ReservationStatus::Expired });
        payer_clock.set(r.held_until - Duration::seconds(300));
    }
    assert_eq!(paid + released, rounds);
    assert!(adapters_postgres::invariants::check(&store).unwrap().is_empty());
}
