//! Real threads on pooled connections racing against a real PostgreSQL. Every race asserts
//! the exact outcome (one winner, exact sum) and ends with `invariants::check` finding nothing.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    reason = "test code: a failed expectation must fail the test"
)]

mod common;

use std::collections::BTreeSet;
use std::sync::Arc;

use common::{assert_consistent, Postgres};
use domain::clock::{Clock, ManualClock};
use domain::error::{PayError, ReserveError};
use domain::ids::UserId;
use domain::queue::{AdmissionOutcome, OsTokenGenerator, TokenStatus};
use domain::reservation::ReservationStatus;
use domain::service::{Policy, Ticketing};
use port_tests::concurrency::race;
use port_tests::fixture::{policy_with, Fixture};
use time::{Duration, OffsetDateTime};

type Fx = Fixture<Postgres>;

#[test]
fn sixty_four_threads_on_one_seat_one_winner() {
    let fx = Fx::seeded();
    let users = fx.active_users(64);
    let (schedule, seat) = (fx.schedule(0).id, fx.seat(0, 7).id);
    let results = race(64, |i| fx.app.reserve(&users[i], schedule, seat));
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
    let results = race(64, |i| fx.app.reserve(&users[i], schedule, seats[i % 5]));
    let winners: Vec<_> = results.iter().filter_map(|r| r.as_ref().ok()).collect();
    assert_eq!(winners.len(), 5);
    let won: BTreeSet<_> = winners.iter().map(|r| r.seat_id).collect();
    assert_eq!(won, seats.iter().copied().collect());
    let holders: BTreeSet<_> = winners.iter().map(|r| r.user_id).collect();
    assert_eq!(holders.len(), 5, "five different users");
    assert!(results.iter().filter(|r| r.is_err()).all(|r| *r == Err(ReserveError::SeatUnavailable)));
    assert_consistent(&fx.harness.store);
}

#[test]
fn two_hundred_concurrent_charges_sum_exactly() {
    let fx = Fx::empty(policy_with(1, None));
    let user = UserId::random();
    // Different amounts, so a lost update could not hide behind an equal one.
    let results = race(200, |i| fx.app.charge(user, i64::try_from(i).unwrap() + 1));
    assert!(results.iter().all(Result::is_ok));
    let expected: i64 = (1..=200).sum();
    assert_eq!(fx.app.balance(user).unwrap().get(), expected);
    let ledger = fx.app.ledger(user).unwrap();
    assert_eq!(ledger.len(), 200);
    // Entries come back in the order the balance changed: each states the running sum.
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
    let results = race(20, |_| fx.app.pay(&who, r.id));
    let paid: Vec<_> = results.iter().filter_map(|r| r.as_ref().ok()).collect();
    assert_eq!(paid.len(), 1);
    assert!(results.iter().filter(|r| r.is_err()).all(|r| *r == Err(PayError::AlreadyPaid)));
    assert_eq!(fx.app.balance(who.user_id()).unwrap().get(), 5_000_000 - r.price.get());
    assert_eq!(paid[0].balance_after.get(), 5_000_000 - r.price.get());
    assert_eq!(fx.stored(r.id).status, ReservationStatus::Paid);
    assert_consistent(&fx.harness.store);
}

#[test]
fn mixed_charges_and_payments_of_one_user_conserve_money() {
    let fx = Fx::seeded();
    let who = fx.active_user();
    let start = 400_000;
    fx.charge(who.user_id(), start);
    // Ten holds of 150,000 or 300,000 won each: far more than the starting balance, so which
    // payments succeed depends on how they interleave with the charges.
    let holds: Vec<_> = (1..=10).map(|n| fx.hold(&who, 0, n * 4)).collect();
    let charges = 30;
    let results = race(holds.len() + charges, |i| match holds.get(i) {
        Some(r) => fx.app.pay(&who, r.id).map(|p| -p.amount.get()).map_err(|e| format!("{e:?}")),
        None => fx.app.charge(who.user_id(), 50_000).map(|_| 50_000).map_err(|e| format!("{e:?}")),
    });
    for r in &results {
        if let Err(e) = r {
            assert!(e.starts_with("InsufficientBalance"), "unexpected failure {e}");
        }
    }
    let moved: i64 = results.iter().filter_map(|r| r.as_ref().ok()).sum();
    let balance = fx.app.balance(who.user_id()).unwrap().get();
    assert_eq!(balance, start + moved);
    assert!(balance >= 0);
    let paid = results[..holds.len()].iter().filter(|r| r.is_ok()).count();
    let paid_stored = holds.iter().filter(|r| fx.stored(r.id).status == ReservationStatus::Paid).count();
    assert_eq!(paid, paid_stored);
    assert_consistent(&fx.harness.store);
}

/// `n` WAITING tokens on the store; returns their values.
fn fill_queue(fx: &Fx, n: usize) -> Vec<String> {
    (0..n).map(|_| fx.app.issue_token(UserId::random()).unwrap().view.token.value.as_str().to_owned()).collect()
}

/// A second "instance": its own clock and use cases over the same database.
fn instance(fx: &Fx, policy: Policy, clock: &ManualClock) -> Ticketing {
    let ports = fx.harness.store.ports(Arc::new(clock.clone()), Arc::new(OsTokenGenerator));
    Ticketing::new(ports, policy)
}

/// Checks the admission log: at most `batch` tokens in any interval, every token once.
fn assert_admissions(fx: &Fx, log: &[(OffsetDateTime, u64)], tokens: &[String], batch: u64, interval: Duration) {
    let mut log: Vec<_> = log.iter().filter(|(_, n)| *n > 0).copied().collect();
    log.sort();
    for (i, (at, _)) in log.iter().enumerate() {
        let in_window: u64 = log[i..].iter().take_while(|(t, _)| *t < *at + interval).map(|(_, n)| n).sum();
        assert!(in_window <= batch, "{in_window} admitted within one interval from {at}");
    }
    let total: u64 = log.iter().map(|(_, n)| n).sum();
    assert_eq!(total, tokens.len() as u64, "every token admitted exactly once");
    for t in tokens {
        let token = fx.ports.queue.find(&domain::queue::TokenValue::parse(t).unwrap()).unwrap().unwrap();
        assert_eq!(token.status, TokenStatus::Active);
    }
    // FIFO: activation times never decrease along the line.
    let activated: Vec<_> = tokens
        .iter()
        .map(|t| {
            let token = fx.ports.queue.find(&domain::queue::TokenValue::parse(t).unwrap()).unwrap().unwrap();
            (token.seq, token.activated_at.unwrap())
        })
        .collect();
    assert!(activated.windows(2).all(|w| w[0].0 < w[1].0 && w[0].1 <= w[1].1));
    assert_consistent(&fx.harness.store);
}

#[test]
fn admission_workers_at_the_same_tick_admit_one_batch_per_interval() {
    let policy = policy_with(50, None);
    let fx = Fx::empty(policy);
    let tokens = fill_queue(&fx, 230);
    let clock = ManualClock::new(fx.now());
    let workers: Vec<_> = (0..4).map(|_| instance(&fx, policy, &clock)).collect();
    let mut log = Vec::new();
    for _ in 0..6 {
        let now = clock.now();
        let outcomes = race(workers.len(), |i| workers[i].admit().unwrap());
        let admitted: Vec<u64> = outcomes
            .iter()
            .filter_map(|o| if let AdmissionOutcome::Admitted(n) = o { Some(*n) } else { None })
            // A tick with nothing waiting admits 0 and is not recorded, so several may run.
            .filter(|n| *n > 0)
            .collect();
        assert!(admitted.len() <= 1, "one admitting tick per instant: {outcomes:?}");
        log.extend(admitted.into_iter().map(|n| (now, n)));
        clock.advance(policy.admission.interval);
    }
    assert_admissions(&fx, &log, &tokens, 50, policy.admission.interval);
}

#[test]
fn admission_workers_on_offset_ticks_admit_at_most_one_batch_per_interval() {
    let policy = policy_with(40, None);
    let fx = Fx::empty(policy);
    let tokens = fill_queue(&fx, 200);
    let base = fx.now();
    // Instance B's timer runs 25 s behind A's; both check every 20 s.
    let (clock_a, clock_b) = (ManualClock::new(base), ManualClock::new(base + Duration::seconds(25)));
    let (a, b) = (instance(&fx, policy, &clock_a), instance(&fx, policy, &clock_b));
    let mut log = Vec::new();
    for _ in 0..30 {
        let outcomes = race(2, |i| {
            let (app, clock) = if i == 0 { (&a, &clock_a) } else { (&b, &clock_b) };
            (clock.now(), app.admit().unwrap())
        });
        for (at, o) in outcomes {
            if let AdmissionOutcome::Admitted(n) = o {
                log.push((at, n));
            }
        }
        clock_a.advance(Duration::seconds(20));
        clock_b.advance(Duration::seconds(20));
    }
    assert_admissions(&fx, &log, &tokens, 40, policy.admission.interval);
}

/// A payment one microsecond before the lapse against the release sweep at the lapse: exactly
/// one of them wins, every time.
#[test]
fn payment_racing_hold_release_at_the_lapse_has_one_winner() {
    let fx = Fx::seeded();
    let who = fx.active_user();
    fx.charge(who.user_id(), 9_000_000);
    let hold = fx.app.policy().hold;
    let pay_clock = ManualClock::new(fx.now());
    let payer = instance(&fx, *fx.app.policy(), &pay_clock);
    let (mut paid, mut released) = (0, 0);
    for n in 1..=30 {
        let r = fx.hold(&who, 2, n);
        let lapse = r.created_at + hold;
        pay_clock.set(lapse - Duration::microseconds(1));
        let (pay, sweep) = {
            let out = race(2, |i| {
                if i == 0 {
                    (Some(payer.pay(&who, r.id)), None)
                } else {
                    (None, Some(fx.ports.reservations.release_lapsed(lapse).unwrap()))
                }
            });
            (out[0].0.clone().unwrap(), out[1].1.unwrap())
        };
        match (&pay, sweep) {
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

/// A payment one microsecond before the lapse against another user's hold of the same seat
/// at the lapse: the seat ends up with exactly one live claim.
#[test]
fn payment_racing_a_new_hold_at_the_lapse_has_one_winner() {
    let fx = Fx::seeded();
    let users = fx.active_users(2);
    let (owner, rival) = (&users[0], &users[1]);
    fx.charge(owner.user_id(), 9_000_000);
    let hold = fx.app.policy().hold;
    let pay_clock = ManualClock::new(fx.now());
    let rival_clock = ManualClock::new(fx.now());
    let payer = instance(&fx, *fx.app.policy(), &pay_clock);
    let grabber = instance(&fx, *fx.app.policy(), &rival_clock);
    let schedule = fx.schedule(1).id;
    for n in 11..=40 {
        let r = fx.hold(owner, 1, n);
        let lapse = r.created_at + hold;
        pay_clock.set(lapse - Duration::microseconds(1));
        rival_clock.set(lapse);
        let seat = r.seat_id;
        let out = race(2, |i| {
            if i == 0 {
                (Some(payer.pay(owner, r.id)), None)
            } else {
                (None, Some(grabber.reserve(rival, schedule, seat)))
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

#[test]
fn concurrent_issues_for_one_user_and_many_users_keep_the_sequence_gapless() {
    let fx = Fx::empty(policy_with(10, None));
    let same = UserId::random();
    let results =
        race(48, |i| if i % 2 == 0 { fx.app.issue_token(same) } else { fx.app.issue_token(UserId::random()) });
    let mine: BTreeSet<_> =
        results.iter().step_by(2).map(|r| r.as_ref().unwrap().view.token.value.as_str().to_owned()).collect();
    assert_eq!(mine.len(), 1, "one token for the user");
    assert_eq!(results.iter().step_by(2).filter(|r| r.as_ref().unwrap().created).count(), 1);
    let seqs: BTreeSet<i64> = results.iter().map(|r| r.as_ref().unwrap().view.token.seq).collect();
    assert_eq!(seqs, (1..=25).collect(), "24 users + 1 = 25 tokens, numbered 1..=25");
    assert_consistent(&fx.harness.store);
}

#[test]
fn expiry_sweeps_racing_change_each_token_and_hold_once() {
    let fx = Fx::seeded();
    let users = fx.active_users(20);
    for (i, who) in users.iter().enumerate() {
        let _ = fx.hold(who, 0, u32::try_from(i).unwrap() + 1);
    }
    let later = fx.now() + Duration::hours(1);
    let swept = race(8, |i| {
        if i % 2 == 0 {
            fx.ports.queue.expire_tokens(later).unwrap()
        } else {
            fx.ports.reservations.release_lapsed(later).unwrap()
        }
    });
    let tokens: u64 = swept.iter().step_by(2).sum();
    let holds: u64 = swept.iter().skip(1).step_by(2).sum();
    assert_eq!((tokens, holds), (20, 20));
    assert_consistent(&fx.harness.store);
}
