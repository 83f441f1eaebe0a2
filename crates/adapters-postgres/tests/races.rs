//! Real threads on pooled connections racing against a real PostgreSQL. Every race asserts the
//! exact outcome (one winner, exact sum, at most N per interval) and ends with
//! `invariants::check` finding nothing.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    reason = "test code: a failed expectation must fail the test"
)]

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread;

use adapters_local::{OsRandom, SystemClock};
use adapters_postgres::PgStore;
use common::{assert_consistent, Postgres};
use diesel::prelude::*;
use diesel::sql_types::{BigInt, Timestamptz};
use domain::clock::{Clock, ManualClock, SkewedClock};
use domain::error::{ChargeError, PayError, ReserveError};
use domain::idempotency::Outcome;
use domain::queue::{AdmissionOutcome, QueueToken, SettingsChange, SettingsPatch, TokenStatus};
use domain::reservation::ReservationStatus;
use domain::service::{Policy, Ports, Ticketing};
use port_tests::concurrency::race;
use port_tests::fixture::{keyed, Admission, Fixture};
use time::{Duration, OffsetDateTime};

type Fx = Fixture<Postgres>;

fn raw(fx: &Fx) -> PgConnection {
    PgConnection::establish(&fx.harness.db.url()).unwrap()
}

/// The use cases of a second instance: its own domain clock, the same store.
fn instance(fx: &Fx, clock: &ManualClock) -> Ticketing {
    Ticketing::new(Ports { clock: Arc::new(clock.clone()), ..fx.ports.clone() }, Policy::default())
}

// ---- seats, money, payments ------------------------------------------------------------------

#[test]
fn sixty_four_threads_on_one_seat_one_winner() {
    let fx = Fx::seeded();
    let users = fx.active_users(64);
    let (schedule, seat) = (fx.schedule(0).id, fx.seat(0, 7).id);
    let w = &fx.world;
    let results = race(64, |i| w.app.reserve(&users[i], schedule, seat));
    let winners: Vec<_> = results.iter().filter_map(|r| r.as_ref().ok()).collect();
    assert_eq!(winners.len(), 1);
    assert!(results.iter().filter(|r| r.is_err()).all(|r| *r == Err(ReserveError::SeatUnavailable)));
    assert_eq!(fx.stored(winners[0].id).status, ReservationStatus::Held);
    assert_consistent(&fx.harness.store);
}

#[test]
fn sixty_four_threads_on_five_seats_five_distinct_winners() {
    let fx = Fx::seeded();
    let users = fx.active_users(64);
    let schedule = fx.schedule(1).id;
    let seats: Vec<_> = (1..=5).map(|n| fx.seat(1, n).id).collect();
    let w = &fx.world;
    let results = race(64, |i| w.app.reserve(&users[i], schedule, seats[i % 5]));
    let winners: Vec<_> = results.iter().filter_map(|r| r.as_ref().ok()).collect();
    assert_eq!(winners.len(), 5);
    let won: BTreeSet<_> = winners.iter().map(|r| r.seat_id).collect();
    assert_eq!(won, seats.iter().copied().collect());
    assert_eq!(winners.iter().map(|r| r.user_id).collect::<BTreeSet<_>>().len(), 5, "five different users");
    assert!(results.iter().filter(|r| r.is_err()).all(|r| *r == Err(ReserveError::SeatUnavailable)));
    assert_consistent(&fx.harness.store);
}

/// Write skew under READ COMMITTED: each hold counts the user's live holds and inserts one
/// more; without the user's hold lock, 48 concurrent holds would all count the same few.
#[test]
fn one_users_concurrent_holds_on_different_seats_never_pass_the_limit() {
    let fx = Fx::seeded();
    let who = fx.active_user();
    let first = fx.hold(&who, 2, 50);
    let seats: Vec<_> =
        (1..=48).map(|n| (fx.schedule(n % 2).id, fx.seat(n % 2, u32::try_from(n).unwrap()).id)).collect();
    let w = &fx.world;
    let results = race(seats.len(), |i| w.app.reserve(&who, seats[i].0, seats[i].1));
    let held = results.iter().filter(|r| r.is_ok()).count();
    assert_eq!(held, 3, "one hold before, three more up to the limit of 4: {results:?}");
    assert!(results.iter().filter(|r| r.is_err()).all(|r| *r == Err(ReserveError::HoldLimit { max: 4 })));
    // Once a hold lapses the user may hold again, still never past the limit.
    fx.advance(fx.app.policy().hold);
    let later = race(8, |i| w.app.reserve(&who, fx.schedule(2).id, fx.seat(2, u32::try_from(i).unwrap() + 1).id));
    assert_eq!(later.iter().filter(|r| r.is_ok()).count(), 4, "all four lapsed at once: {later:?}");
    assert_eq!(fx.stored(first.id).status, ReservationStatus::Held, "stored HELD, lapsed: the sweep has not run");
    assert_consistent(&fx.harness.store);
}

#[test]
fn two_hundred_concurrent_charges_sum_exactly() {
    let fx = Fx::empty(Admission::default());
    let user = fx.user();
    let w = &fx.world;
    // Different amounts, so a lost update could not hide behind an equal one.
    let results = race(200, |i| w.app.charge(user, i64::try_from(i).unwrap() + 1, None));
    assert!(results.iter().all(Result::is_ok));
    assert_eq!(fx.app.balance(user).unwrap().get(), (1..=200).sum::<i64>());
    let mut ledger = fx.ledger(user);
    assert_eq!(ledger.len(), 200);
    // Oldest first, each entry states the running sum: ledger order is balance order.
    ledger.reverse();
    let mut running = 0;
    for e in &ledger {
        running += e.amount.get();
        assert_eq!(e.balance_after.get(), running);
    }
    assert_consistent(&fx.harness.store);
}

#[test]
fn twenty_concurrent_payments_of_one_reservation_debit_once() {
    let fx = Fx::seeded();
    let who = fx.active_user();
    fx.charge(who.user_id(), 5_000_000);
    let r = fx.hold(&who, 0, 12);
    let w = &fx.world;
    let results = race(20, |_| w.pay(&who, r.id));
    let paid: Vec<_> = results.iter().filter_map(|r| r.as_ref().ok()).collect();
    assert_eq!(paid.len(), 1);
    // A thread that reads the token after the winner committed finds it used up.
    assert!(
        results.iter().filter(|r| r.is_err()).all(|r| matches!(r, Err(PayError::AlreadyPaid | PayError::TokenExpired))),
        "{results:?}"
    );
    assert_eq!(fx.app.balance(who.user_id()).unwrap().get(), 5_000_000 - r.price.get());
    assert_eq!(fx.stored(r.id).status, ReservationStatus::Paid);
    assert_consistent(&fx.harness.store);
}

/// One ACTIVE token, four held reservations, each payable alone, sixteen threads: the token
/// pays exactly once; every other attempt is `TokenExpired` and changes nothing.
#[test]
fn a_token_pays_once_however_many_threads_pay_with_it() {
    let fx = Fx::seeded();
    let who = fx.active_user();
    fx.charge(who.user_id(), 9_000_000);
    let holds: Vec<_> = (1..=4).map(|n| fx.hold(&who, 0, n)).collect();
    let w = &fx.world;
    let results = race(16, |i| w.pay(&who, holds[i % holds.len()].id));
    let paid: Vec<_> = results.iter().filter_map(|r| r.as_ref().ok()).collect();
    assert_eq!(paid.len(), 1, "{results:?}");
    assert!(
        results.iter().filter(|r| r.is_err()).all(|r| matches!(r, Err(PayError::TokenExpired | PayError::AlreadyPaid))),
        "{results:?}"
    );
    let sold = holds.iter().filter(|r| fx.stored(r.id).status == ReservationStatus::Paid).count();
    assert_eq!(sold, 1);
    assert_eq!(fx.app.balance(who.user_id()).unwrap().get(), 9_000_000 - paid[0].amount.get());
    assert_eq!(fx.token(who.token()).status, TokenStatus::Expired);
    assert_consistent(&fx.harness.store);
}

/// One user pays a seat that costs more than their balance while thirty charges land: the
/// payment succeeds exactly when enough charges committed before it, and no update is lost.
#[test]
fn a_payment_racing_charges_of_its_user_conserves_money() {
    let fx = Fx::seeded();
    let who = fx.active_user();
    let start = 50_000;
    fx.charge(who.user_id(), start);
    let r = fx.hold(&who, 0, 1);
    assert!(r.price.get() > start);
    let w = &fx.world;
    let results = race(31, |i| {
        if i == 0 {
            w.pay(&who, r.id).map(|p| -p.amount.get()).map_err(|e| format!("{e:?}"))
        } else {
            w.app.charge(who.user_id(), 10_000, None).map(|_| 10_000).map_err(|e| format!("{e:?}"))
        }
    });
    if let Err(e) = &results[0] {
        assert!(e.starts_with("InsufficientBalance"), "unexpected failure {e}");
    }
    assert!(results[1..].iter().all(Result::is_ok));
    let moved: i64 = results.iter().filter_map(|r| r.as_ref().ok()).sum();
    let balance = fx.app.balance(who.user_id()).unwrap().get();
    assert_eq!(balance, start + moved);
    assert!(balance >= 0);
    assert_eq!(results[0].is_ok(), fx.stored(r.id).status == ReservationStatus::Paid);
    assert_consistent(&fx.harness.store);
}

/// A payment one microsecond before the lapse against the release sweep at the lapse: exactly
/// one of them wins, every time.
#[test]
fn payment_racing_hold_release_at_the_lapse_has_one_winner() {
    let fx = Fx::seeded();
    let users = fx.active_users(30);
    let pay_clock = ManualClock::new(fx.now());
    let payer = instance(&fx, &pay_clock);
    let hold = fx.app.policy().hold;
    let (mut paid, mut released) = (0, 0);
    for (n, who) in users.iter().enumerate() {
        fx.charge(who.user_id(), 9_000_000);
        let r = fx.hold(who, 2, u32::try_from(n).unwrap() + 1);
        let lapse = r.created_at + hold;
        pay_clock.set(lapse - Duration::microseconds(1));
        let w = &fx.world;
        let out = race(2, |i| {
            if i == 0 {
                (Some(payer.pay(who.token().value.as_str(), r.id, None)), None)
            } else {
                (None, Some(w.ports.reservations.release_lapsed(lapse, 100).unwrap()))
            }
        });
        let pay = out[0].0.clone().unwrap();
        let swept = out[1].1.unwrap();
        match (&pay, swept) {
            (Ok(_), 0) => paid += 1,
            (Err(PayError::HoldExpired), 1) => released += 1,
            other => panic!("round {n}: both or neither won: {other:?}"),
        }
        let stored = fx.stored(r.id).status;
        assert_eq!(stored, if pay.is_ok() { ReservationStatus::Paid } else { ReservationStatus::Expired });
    }
    assert_eq!(paid + released, 30);
    eprintln!("lapse race: payment won {paid} times, release won {released} times");
    assert_consistent(&fx.harness.store);
}

/// A payment one microsecond before the lapse against another user's hold of the same seat at
/// the lapse: the seat ends with exactly one live claim.
#[test]
fn payment_racing_a_new_hold_at_the_lapse_has_one_winner() {
    let fx = Fx::seeded();
    let owners = fx.active_users(20);
    let rivals = fx.active_users(20);
    let hold = fx.app.policy().hold;
    let pay_clock = ManualClock::new(fx.now());
    let rival_clock = ManualClock::new(fx.now());
    let payer = instance(&fx, &pay_clock);
    let grabber = instance(&fx, &rival_clock);
    let schedule = fx.schedule(1).id;
    for (n, (owner, rival)) in owners.iter().zip(&rivals).enumerate() {
        fx.charge(owner.user_id(), 9_000_000);
        let r = fx.hold(owner, 1, u32::try_from(n).unwrap() + 11);
        let lapse = r.created_at + hold;
        pay_clock.set(lapse - Duration::microseconds(1));
        rival_clock.set(lapse);
        let out = race(2, |i| {
            if i == 0 {
                (Some(payer.pay(owner.token().value.as_str(), r.id, None)), None)
            } else {
                (None, Some(grabber.reserve(rival, schedule, r.seat_id)))
            }
        });
        let pay = out[0].0.clone().unwrap();
        let grab = out[1].1.clone().unwrap();
        match (&pay, &grab) {
            (Ok(_), Err(ReserveError::SeatUnavailable)) | (Err(PayError::HoldExpired), Ok(_)) => {}
            other => panic!("seat {n}: both or neither won: {other:?}"),
        }
    }
    assert_consistent(&fx.harness.store);
}

// ---- idempotency -------------------------------------------------------------------------------

/// Twenty concurrent charges with one key: one effect; each other one replays it or is told the
/// first is in flight.
#[test]
fn concurrent_keyed_charges_have_one_effect() {
    let fx = Fx::empty(Admission::default());
    let user = fx.user();
    let w = &fx.world;
    let results = race(20, |_| w.app.charge(user, 7_000, Some(keyed("charge-1"))));
    let fresh = results.iter().filter(|r| matches!(r, Ok(Outcome::Fresh { .. }))).count();
    assert_eq!(fresh, 1, "{results:?}");
    assert!(
        results.iter().all(|r| matches!(r, Ok(_) | Err(ChargeError::Key(domain::error::KeyConflict::InFlight)))),
        "{results:?}"
    );
    let recorded = results.iter().find_map(|r| match r {
        Ok(Outcome::Fresh { recorded, .. }) => recorded.clone(),
        _ => None,
    });
    for r in &results {
        if let Ok(Outcome::Replayed(response)) = r {
            assert_eq!(Some(response), recorded.as_ref(), "a replay is the recorded response");
        }
    }
    assert_eq!(fx.app.balance(user).unwrap().get(), 7_000);
    assert_eq!(fx.ledger(user).len(), 1);
    assert_consistent(&fx.harness.store);
}

/// Twelve concurrent payments with one key (the same request): one payment; the others replay
/// it or are told it is in flight, none fails with the token it used up.
#[test]
fn concurrent_keyed_payments_have_one_effect() {
    let fx = Fx::seeded();
    let who = fx.active_user();
    fx.charge(who.user_id(), 9_000_000);
    let r = fx.hold(&who, 0, 9);
    let w = &fx.world;
    let results = race(12, |_| w.app.pay(who.token().value.as_str(), r.id, Some(keyed("pay-1"))));
    let fresh = results.iter().filter(|r| matches!(r, Ok(Outcome::Fresh { .. }))).count();
    assert_eq!(fresh, 1, "{results:?}");
    assert!(
        results.iter().all(|r| matches!(r, Ok(_) | Err(PayError::Key(domain::error::KeyConflict::InFlight)))),
        "{results:?}"
    );
    assert_eq!(fx.app.balance(who.user_id()).unwrap().get(), 9_000_000 - r.price.get());
    assert_eq!(fx.stored(r.id).status, ReservationStatus::Paid);
    assert_consistent(&fx.harness.store);
}

// ---- the queue -----------------------------------------------------------------------------

/// Group commit over two instances (two stores, two batchers): 64 threads issue for 48 users
/// (16 of them twice at once, once through each instance), while a
/// watcher reads the line in a loop. Every snapshot it takes shows a gapless prefix (a token is
/// visible only after every lower seq: commit order), each user has one token created once,
/// and the numbers are 1..=48.
#[test]
fn group_commit_issues_are_gapless_commit_ordered_and_one_per_user() {
    let fx = Fx::empty(Admission::default());
    let users: Vec<_> = (0..48).map(|_| fx.user()).collect();
    let stop = AtomicBool::new(false);
    let mut watcher = raw(&fx);
    let second = PgStore::new(&fx.harness.db.config()).unwrap().with_clock(Arc::new(fx.clock.clone()));
    let other = Ticketing::new(second.ports(Arc::new(fx.clock.clone()), Arc::new(OsRandom)), Policy::default());
    let apps = [&fx.app, &other];
    let (results, snapshots) = thread::scope(|s| {
        let watch = s.spawn(|| {
            #[derive(QueryableByName)]
            struct Seen {
                #[diesel(sql_type = BigInt)]
                n: i64,
                #[diesel(sql_type = BigInt)]
                top: i64,
            }
            let mut seen = Vec::new();
            while !stop.load(Ordering::SeqCst) {
                let row: Seen =
                    diesel::sql_query("SELECT count(*) AS n, COALESCE(max(seq), 0) AS top FROM queue_tokens")
                        .get_result(&mut watcher)
                        .unwrap();
                seen.push((row.n, row.top));
            }
            seen
        });
        let results = race(64, |i| apps[(i + i / 48) % 2].issue_token(users[i % 48]).unwrap());
        stop.store(true, Ordering::SeqCst);
        (results, watch.join().unwrap())
    });
    assert!(snapshots.iter().all(|(n, top)| n == top), "a snapshot saw a gap: {snapshots:?}");
    let mut per_user: BTreeMap<_, Vec<_>> = BTreeMap::new();
    for r in &results {
        per_user.entry(r.view.token.user_id).or_default().push(r);
    }
    assert_eq!(per_user.len(), 48);
    for (user, issued) in &per_user {
        let values: BTreeSet<_> = issued.iter().map(|r| r.view.token.value.as_str()).collect();
        assert_eq!(values.len(), 1, "one token for {user}");
        assert_eq!(issued.iter().filter(|r| r.created).count(), 1, "created once for {user}");
    }
    let seqs: BTreeSet<i64> = results.iter().map(|r| r.view.token.seq).collect();
    assert_eq!(seqs, (1..=48).collect());
    // Each token's position is its place in line (nobody admitted yet).
    assert!(results.iter().all(|r| r.view.position == r.view.token.seq));
    #[derive(QueryableByName)]
    struct Batches {
        #[diesel(sql_type = BigInt)]
        n: i64,
    }
    let batches: Batches = diesel::sql_query("SELECT count(DISTINCT xmin::text) AS n FROM queue_tokens")
        .get_result(&mut raw(&fx))
        .unwrap();
    eprintln!("48 tokens issued by {} transactions ({} snapshots watched)", batches.n, snapshots.len());
    assert_consistent(&fx.harness.store);
}

/// A user whose ACTIVE token lapsed gets a new one, while other users are issued in the same
/// batches; the lapsed one is stored EXPIRED first, and numbering stays gapless.
#[test]
fn issues_replace_lapsed_tokens_inside_concurrent_batches() {
    let fx = Fx::empty(Admission::batch(10, None));
    let old: Vec<QueueToken> = (0..10).map(|_| fx.issue(fx.user())).collect();
    fx.admit_all(&old);
    fx.advance(Duration::seconds(600));
    let fresh: Vec<_> = (0..22).map(|_| fx.user()).collect();
    let w = &fx.world;
    let results = race(32, |i| match old.get(i) {
        Some(t) => w.app.issue_token(t.user_id).unwrap(),
        None => w.app.issue_token(fresh[i - old.len()]).unwrap(),
    });
    assert!(results.iter().all(|r| r.created && r.view.token.status == TokenStatus::Waiting));
    assert_eq!(results.iter().map(|r| r.view.token.seq).collect::<BTreeSet<_>>(), (11..=42).collect());
    assert!(old.iter().all(|t| fx.token(t).status == TokenStatus::Expired));
    assert_consistent(&fx.harness.store);
}

#[test]
fn expiry_sweeps_racing_change_each_token_and_hold_once() {
    let fx = Fx::seeded();
    let users = fx.active_users(20);
    for (i, who) in users.iter().enumerate() {
        let _ = fx.hold(who, 0, u32::try_from(i).unwrap() + 1);
    }
    fx.advance(Duration::hours(1));
    let later = fx.now();
    let w = &fx.world;
    let swept = race(8, |i| {
        if i % 2 == 0 {
            w.ports.queue.expire_tokens(3).unwrap()
        } else {
            w.ports.reservations.release_lapsed(later, 3).unwrap()
        }
    });
    // Each sweep changes at most its limit; the rest is left for the next round.
    assert!(swept.iter().all(|n| *n <= 3));
    let mut tokens: u64 = swept.iter().step_by(2).sum();
    let mut holds: u64 = swept.iter().skip(1).step_by(2).sum();
    loop {
        let t = fx.ports.queue.expire_tokens(3).unwrap();
        tokens += t;
        if t == 0 {
            break;
        }
    }
    loop {
        let h = fx.ports.reservations.release_lapsed(later, 3).unwrap();
        holds += h;
        if h == 0 {
            break;
        }
    }
    assert_eq!((tokens, holds), (20, 20));
    assert_consistent(&fx.harness.store);
}

// ---- admission over several instances --------------------------------------------------------

/// `n` WAITING tokens.
fn fill_queue(fx: &Fx, n: usize) -> Vec<QueueToken> {
    (0..n).map(|_| fx.issue(fx.user())).collect()
}

/// Activation times as read: (seq, activated_at) of every token of `main`, by seq: as stored,
/// or, for a token stored WAITING that an admission passed, its range's time (an admission
/// writes no token: `queue::admitted_join`).
fn activations(fx: &Fx) -> Vec<(i64, Option<OffsetDateTime>)> {
    #[derive(QueryableByName)]
    struct Row {
        #[diesel(sql_type = BigInt)]
        seq: i64,
        #[diesel(sql_type = diesel::sql_types::Nullable<Timestamptz>)]
        activated_at: Option<OffsetDateTime>,
    }
    let rows: Vec<Row> = diesel::sql_query(
        "SELECT t.seq, COALESCE(t.activated_at, (SELECT r.at FROM queue_admission a \
               JOIN queue_admission_ranges r ON r.room = a.room AND r.after < t.seq AND r.through >= t.seq \
               WHERE a.room = t.room AND t.status = 'WAITING' AND t.seq <= a.admitted_through \
                 AND r.expires_at IS NOT NULL)) AS activated_at \
             FROM queue_tokens t WHERE t.room = 'main' ORDER BY t.seq",
    )
    .load(&mut raw(fx))
    .unwrap();
    rows.into_iter().map(|r| (r.seq, r.activated_at)).collect()
}

/// From the stored activation times alone: every token admitted, FIFO (activation times never
/// decrease along the line), and at most `batch` activations within any one interval.
fn assert_at_most_batch_per_interval(fx: &Fx, batch: usize, interval: Duration) {
    let activated = activations(fx);
    assert!(activated.iter().all(|(_, at)| at.is_some()), "every token admitted once");
    let times: Vec<OffsetDateTime> = activated.iter().filter_map(|(_, at)| *at).collect();
    assert!(times.windows(2).all(|w| w[0] <= w[1]), "FIFO");
    for (i, start) in times.iter().enumerate() {
        let within = times[i..].iter().take_while(|t| **t < *start + interval).count();
        assert!(within <= batch, "{within} admitted within one interval from {start}");
    }
    assert_consistent(&fx.harness.store);
}

/// Two instances on one database, their domain clocks 30 s apart, the store's clock injected
/// (it is the database's, shared): racing ticks every 20 s admit at most N per interval.
#[test]
fn instances_with_skewed_clocks_admit_at_most_n_per_interval_on_the_store_clock() {
    let fx = Fx::empty(Admission::batch(5, None));
    fill_queue(&fx, 40);
    let db_clock = fx.clock.clone();
    let second = PgStore::new(&fx.harness.db.config()).unwrap().with_clock(Arc::new(db_clock.clone()));
    let ahead = SkewedClock::new(Arc::new(db_clock.clone()), Duration::seconds(30));
    let a = Ticketing::new(fx.harness.store.ports(Arc::new(db_clock.clone()), Arc::new(OsRandom)), Policy::default());
    let b = Ticketing::new(second.ports(Arc::new(ahead), Arc::new(OsRandom)), Policy::default());
    for _ in 0..40 {
        let outcomes = race(2, |i| if i == 0 { a.admit().unwrap() } else { b.admit().unwrap() });
        let admitted: u64 = outcomes.iter().map(|o| if let AdmissionOutcome::Admitted(n) = o { *n } else { 0 }).sum();
        assert!(admitted <= 5, "{outcomes:?}");
        db_clock.advance(Duration::seconds(20));
    }
    assert_at_most_batch_per_interval(&fx, 5, Duration::seconds(60));
}

/// The same on the database server's own clock, as in production: two stores without an
/// injected clock, instance domain clocks 30 s apart, N = 4 every second, each instance
/// checking every 50 ms. The verdict comes from the activation times the server stored, not
/// from timing the test.
#[test]
fn instances_with_skewed_clocks_admit_at_most_n_per_interval_on_the_database_clock() {
    let fx = Fx::empty(Admission::default());
    let tokens = fill_queue(&fx, 12);
    let patch = SettingsPatch::new(SettingsChange {
        paused: Some(false),
        admit_batch: Some(4),
        admit_interval_secs: Some(1),
        ..SettingsChange::default()
    })
    .unwrap();
    fx.ports.settings.update(&patch, None).unwrap();
    let stores: Vec<PgStore> = (0..2).map(|_| PgStore::new(&fx.harness.db.config()).unwrap()).collect();
    let apps: Vec<Ticketing> = stores
        .iter()
        .zip([Duration::ZERO, Duration::seconds(30)])
        .map(|(store, skew)| {
            let clock = SkewedClock::new(Arc::new(SystemClock), skew);
            Ticketing::new(store.ports(Arc::new(clock), Arc::new(OsRandom)), Policy::default())
        })
        .collect();
    let done = AtomicBool::new(false);
    race(2, |i| {
        while !done.load(Ordering::SeqCst) {
            apps[i].admit().unwrap();
            let waiting = apps[i].queue_state().unwrap().stats.waiting;
            if waiting == 0 {
                done.store(true, Ordering::SeqCst);
            }
            thread::sleep(std::time::Duration::from_millis(50));
        }
    });
    assert!(tokens.iter().all(|t| fx.token(t).status == TokenStatus::Active));
    assert_at_most_batch_per_interval(&fx, 4, Duration::seconds(1));
    // The server's clock, not an instance's: no activation is stamped 30 s ahead.
    let latest = activations(&fx).iter().filter_map(|(_, at)| *at).max().unwrap();
    assert!(latest <= SystemClock.now(), "activation stamped in the future: {latest}");
}

/// What one thread of [`admission_ticks_racing_issues_payments_and_sweeps_keep_every_guarantee`]
/// saw.
#[derive(Debug)]
enum Seen {
    Ticks(Vec<AdmissionOutcome>),
    Issues(Vec<domain::service::IssuedToken>),
    Paid(Result<domain::payment::Payment, PayError>, Result<domain::payment::Payment, PayError>),
    Swept(u64),
}

/// Admission ticks (each recording a range, writing no token) run while four threads issue
/// new tokens, twelve buyers admitted by earlier ticks (their tokens derived ACTIVE, stored
/// WAITING) pay and pay again, and a sweep runs: at most N per tick; every payment of a token
/// admitted by a range succeeds once and uses it up; every issue answers a place above the
/// cursor it read; the waiting read positions exactly `1..=waiting` after it; and the
/// invariants hold.
#[test]
fn admission_ticks_racing_issues_payments_and_sweeps_keep_every_guarantee() {
    let fx = Fx::seeded();
    fx.set_admission(Admission { batch: 6, interval_secs: 1, ttl_secs: 600, max_active: None });
    let payers = fx.active_users(12);
    let holds: Vec<_> = payers
        .iter()
        .enumerate()
        .map(|(i, who)| {
            fx.charge(who.user_id(), 9_000_000);
            fx.hold(who, 0, u32::try_from(i).unwrap() + 1)
        })
        .collect();
    let through_before = fx.ports.queue.cursor().unwrap().admitted_through;
    let fresh: Vec<_> = (0..60).map(|_| fx.user()).collect();
    let w = &fx.world;
    let seen = race(18, |i| match i {
        0 => Seen::Ticks(
            (0..30)
                .map(|_| {
                    fx.advance(Duration::seconds(1));
                    w.app.admit().unwrap()
                })
                .collect(),
        ),
        1..=4 => Seen::Issues((0..15).map(|k| w.app.issue_token(fresh[(i - 1) * 15 + k]).unwrap()).collect()),
        5..=16 => {
            let (who, hold) = (&payers[i - 5], &holds[i - 5]);
            Seen::Paid(w.pay(who, hold.id), w.pay(who, hold.id))
        }
        _ => Seen::Swept((0..30).map(|_| w.ports.queue.expire_tokens(5).unwrap()).sum()),
    });
    let mut admitted = 0;
    let mut issued = Vec::new();
    for s in &seen {
        match s {
            Seen::Ticks(ticks) => {
                for t in ticks {
                    match t {
                        AdmissionOutcome::Admitted(n) => {
                            assert!(*n <= 6, "{ticks:?}");
                            admitted += n;
                        }
                        AdmissionOutcome::NotDue { .. } => {}
                        other => panic!("a tick answered {other:?}"),
                    }
                }
            }
            Seen::Issues(answers) => issued.extend(answers.iter().cloned()),
            Seen::Paid(first, second) => {
                assert!(first.is_ok(), "{first:?}");
                assert!(matches!(second, Err(PayError::AlreadyPaid | PayError::TokenExpired)), "{second:?}");
            }
            Seen::Swept(n) => assert_eq!(*n, 0, "nothing is due within the TTL"),
        }
    }
    assert!(admitted > 0, "the ticks admitted while the others ran");
    let cursor = fx.ports.queue.cursor().unwrap();
    assert_eq!(cursor.admitted_through - through_before, i64::try_from(admitted).unwrap());
    for who in &payers {
        let used = fx.token(who.token());
        assert_eq!(
            (used.status, used.expired_reason),
            (TokenStatus::Expired, Some(domain::queue::ExpiredReason::Paid))
        );
        assert_eq!(used.activated_at, who.token().activated_at, "used up with the activation it read");
    }
    assert_eq!(issued.len(), 60);
    assert!(
        issued.iter().all(|r| r.created
            && r.view.status == TokenStatus::Waiting
            && (1..=r.view.token.seq).contains(&r.view.position)),
        "every issue answers a place above the cursor it read"
    );
    // After the race: each token WAITING exactly when the cursor has not passed it, and the
    // waiting at positions 1..=waiting in seq order.
    let mut waiting: Vec<i64> = Vec::new();
    for r in &issued {
        let (token, now) = fx.ports.queue.find_with_cursor(&r.view.token.value).unwrap().unwrap();
        assert_eq!(now.admitted_through, cursor.admitted_through);
        let passed = token.seq <= cursor.admitted_through;
        assert_eq!(token.status, if passed { TokenStatus::Active } else { TokenStatus::Waiting }, "{token:?}");
        if !passed {
            waiting.push(token.seq - cursor.admitted_through);
        }
    }
    waiting.sort_unstable();
    assert_eq!(waiting, (1..=i64::try_from(waiting.len()).unwrap()).collect::<Vec<_>>());
    assert_eq!(fx.ports.queue.stats().unwrap().waiting, u64::try_from(waiting.len()).unwrap());
    assert_consistent(&fx.harness.store);
}

/// Thirty tokens admitted by one range (stored WAITING) and then expired: four sweeps, use-ups
/// of ten of them and re-joins of the buyers of ten others race. Each token is written once:
/// the sweeps' count and the use-ups together never exceed the thirty, every old token ends
/// stored EXPIRED (PAID with the use-up's time, or TTL with its range's times), and each
/// re-join gets one new token.
#[test]
fn sweeps_use_ups_and_rejoins_racing_write_each_admitted_token_once() {
    let fx = Fx::empty(Admission::batch(30, None));
    let tokens = fill_queue(&fx, 30);
    assert_eq!(fx.app.admit().unwrap(), AdmissionOutcome::Admitted(30));
    let activated = fx.now();
    let expiry = activated + Duration::seconds(600);
    fx.clock.set(expiry);
    let paid_at = expiry - Duration::seconds(1);
    let w = &fx.world;
    let seen = race(24, |i| match i {
        0..=3 => {
            let mut n = 0;
            loop {
                let step = w.ports.queue.expire_tokens(3).unwrap();
                n += step;
                if step == 0 {
                    break (n, None);
                }
            }
        }
        4..=13 => {
            w.ports.queue.use_up(&tokens[i - 4].value, paid_at).unwrap();
            (0, None)
        }
        _ => (0, Some(w.app.issue_token(tokens[i].user_id).unwrap())),
    });
    let swept: u64 = seen.iter().map(|(n, _)| n).sum();
    let mut paid = 0;
    for (i, t) in tokens.iter().enumerate() {
        let read = fx.token(t);
        assert_eq!((read.status, read.activated_at), (TokenStatus::Expired, Some(activated)), "token {i}");
        match read.expired_reason {
            Some(domain::queue::ExpiredReason::Paid) => {
                assert!(i < 10, "only the ten were used up");
                assert_eq!(read.expires_at, Some(paid_at));
                paid += 1;
            }
            Some(domain::queue::ExpiredReason::Ttl) => assert_eq!(read.expires_at, Some(expiry)),
            other => panic!("token {i} expired for {other:?}"),
        }
    }
    assert!(swept + paid <= 30, "a token written twice: {swept} swept, {paid} paid");
    let rejoined: Vec<_> = seen.iter().filter_map(|(_, r)| r.as_ref()).collect();
    assert_eq!(rejoined.len(), 10);
    assert!(rejoined.iter().all(|r| r.created && r.view.token.status == TokenStatus::Waiting));
    let seqs: BTreeSet<i64> = rejoined.iter().map(|r| r.view.token.seq).collect();
    assert_eq!(seqs, (31..=40).collect());
    assert_eq!(fx.ports.queue.expire_tokens(100).unwrap(), 0);
    assert_consistent(&fx.harness.store);
}

// ---- operator changes ------------------------------------------------------------------------

/// Issue 21: concurrent operator changes through three instances (each with its own pool and
/// settings cache, as `concert serve` wires them) while eight threads issue tokens. Each
/// round, four changes name different fields and two more race on `admitBatch`. Every change
/// answered OK survives, or is superseded by a later change of the same field: the
/// (before, after) pairs the store returned chain from the first settings to the last, one
/// link per change, so no change read a value another one had already replaced.
#[test]
fn concurrent_operator_changes_through_several_instances_are_never_lost() {
    use adapters_local::settings_cache::CachedSettings;
    use adapters_local::ticker::SystemTicker;
    use domain::ports::SettingsStore;

    let fx = Fx::empty(Admission::default());
    let stores: Vec<PgStore> = (0..3).map(|_| PgStore::new(&fx.harness.db.config()).unwrap()).collect();
    let settings: Vec<CachedSettings> = stores
        .iter()
        .map(|s| {
            CachedSettings::new(Arc::new(s.clone()), Arc::new(SystemTicker), std::time::Duration::from_millis(250))
        })
        .collect();
    let loaders: Vec<Ticketing> = stores
        .iter()
        .map(|s| Ticketing::new(s.ports(Arc::new(SystemClock), Arc::new(OsRandom)), Policy::default()))
        .collect();
    let done = AtomicBool::new(false);
    thread::scope(|scope| {
        for i in 0..8 {
            let (app, done) = (&loaders[i % 3], &done);
            scope.spawn(move || {
                while !done.load(Ordering::SeqCst) {
                    app.issue_token(domain::ids::UserId::from_uuid(uuid::Uuid::new_v4())).unwrap();
                }
            });
        }
        for round in 0..20_i64 {
            let patches = [
                SettingsPatch::new(SettingsChange { paused: Some(round % 2 == 0), ..SettingsChange::default() })
                    .unwrap(),
                SettingsPatch::new(SettingsChange {
                    admit_interval_secs: Some(100 + round),
                    ..SettingsChange::default()
                })
                .unwrap(),
                SettingsPatch::new(SettingsChange {
                    active_ttl_secs: Some(1_000 + round),
                    ..SettingsChange::default()
                })
                .unwrap(),
                SettingsPatch::new(SettingsChange {
                    max_active: Some(Some(5_000 + round)),
                    ..SettingsChange::default()
                })
                .unwrap(),
                SettingsPatch::new(SettingsChange { admit_batch: Some(10 + round), ..SettingsChange::default() })
                    .unwrap(),
                SettingsPatch::new(SettingsChange { admit_batch: Some(50 + round), ..SettingsChange::default() })
                    .unwrap(),
            ];
            let first = settings[0].load().unwrap();
            let results = race(patches.len(), |i| settings[i % 3].update(&patches[i], None).unwrap());
            // One chain from the settings before the round to the settings after it.
            let mut chain = vec![first];
            let mut links: Vec<_> = results.clone();
            while !links.is_empty() {
                let at = chain.last().copied().unwrap();
                let next = links.iter().position(|(before, _)| *before == at);
                let Some(next) = next else {
                    panic!("round {round}: no change started from {at}; the changes were {results:#?}")
                };
                chain.push(links.remove(next).1);
            }
            let last = *chain.last().unwrap();
            for s in &stores {
                assert_eq!(s.load().unwrap(), last, "round {round}: every instance's store reads the last link");
            }
            let a = last.admission;
            assert_eq!(last.paused, round % 2 == 0, "round {round}");
            assert_eq!(a.interval, Duration::seconds(100 + round), "round {round}");
            assert_eq!(a.active_ttl, Duration::seconds(1_000 + round), "round {round}");
            assert_eq!(a.max_active, Some(u32::try_from(5_000 + round).unwrap()), "round {round}");
            let batches = [10 + round, 50 + round].map(|b| u32::try_from(b).unwrap());
            assert!(batches.contains(&a.batch), "round {round}: {a:?}");
        }
        done.store(true, Ordering::SeqCst);
    });
}
