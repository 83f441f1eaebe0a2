//! Real threads racing on one seat, one account, one reservation, one user, one admission
//! tick. Each case asserts the invariant (one winner, exact sum), never a timing.

use std::collections::BTreeSet;
use std::sync::Barrier;
use std::thread;

use domain::account::LedgerKind;
use domain::error::{PayError, ReserveError};
use domain::ids::UserId;
use domain::queue::AdmissionOutcome;
use domain::reservation::ReservationStatus;

use crate::fixture::{policy_with, Fixture};
use crate::Harness;

/// Runs `f(0..threads)` on that many threads released together by a barrier, so the calls
/// really overlap, and returns their results in thread order.
pub fn race<T: Send>(threads: usize, f: impl Fn(usize) -> T + Sync) -> Vec<T> {
    let barrier = Barrier::new(threads);
    thread::scope(|s| {
        let handles: Vec<_> = (0..threads)
            .map(|i| {
                let (f, barrier) = (&f, &barrier);
                s.spawn(move || {
                    barrier.wait();
                    f(i)
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    })
}

/// Of 64 concurrent holds of one seat by 64 users exactly one succeeds.
pub fn one_of_many_concurrent_holds_wins<H: Harness>() {
    const THREADS: usize = 64;
    let fx = Fixture::<H>::seeded();
    let users = fx.active_users(THREADS);
    let (schedule, seat) = (fx.schedule(0).id, fx.seat(0, 25).id);
    let results = race(THREADS, |i| fx.app.reserve(&users[i], schedule, seat));
    let winners: Vec<_> = results.iter().filter_map(|r| r.as_ref().ok()).collect();
    assert_eq!(winners.len(), 1, "exactly one hold wins");
    assert!(results.iter().filter(|r| r.is_err()).all(|r| *r == Err(ReserveError::SeatUnavailable)));
    let seats = fx.ports.catalogue.seats(schedule).unwrap().unwrap();
    let claim = seats.iter().find(|s| s.seat.id == seat).unwrap().claim.unwrap();
    assert_eq!((claim.reservation_id, claim.status), (winners[0].id, ReservationStatus::Held));
}

/// 200 concurrent charges of one account lose no update: the balance is the exact sum, the
/// ledger has 200 entries that sum to it, and every intermediate balance appears once.
pub fn concurrent_charges_lose_no_update<H: Harness>() {
    const THREADS: i64 = 200;
    const AMOUNT: i64 = 1_000;
    let fx = Fixture::<H>::empty(policy_with(1, None));
    let user = UserId::random();
    race(usize::try_from(THREADS).unwrap(), |_| fx.app.charge(user, AMOUNT).unwrap());
    assert_eq!(fx.app.balance(user).unwrap().get(), THREADS * AMOUNT);
    let ledger = fx.app.ledger(user).unwrap();
    assert_eq!(ledger.len(), usize::try_from(THREADS).unwrap());
    assert_eq!(ledger.iter().map(|e| e.amount.get()).sum::<i64>(), THREADS * AMOUNT);
    let afters: BTreeSet<i64> = ledger.iter().map(|e| e.balance_after.get()).collect();
    assert_eq!(afters, (1..=THREADS).map(|i| i * AMOUNT).collect());
}

/// Of 20 concurrent payments of one reservation exactly one succeeds; the others see
/// `AlreadyPaid` and the balance is debited once.
pub fn concurrent_payments_debit_once<H: Harness>() {
    const THREADS: usize = 20;
    let fx = Fixture::<H>::seeded();
    let who = fx.active_user();
    fx.charge(who.user_id(), 10_000_000);
    let r = fx.hold(&who, 0, 3);
    let results = race(THREADS, |_| fx.app.pay(&who, r.id));
    assert_eq!(results.iter().filter(|r| r.is_ok()).count(), 1, "exactly one payment wins");
    assert!(results.iter().filter(|r| r.is_err()).all(|r| *r == Err(PayError::AlreadyPaid)));
    assert_eq!(fx.app.balance(who.user_id()).unwrap().get(), 10_000_000 - r.price.get());
    let payments = fx.app.ledger(who.user_id()).unwrap().into_iter().filter(|e| e.kind == LedgerKind::Payment).count();
    assert_eq!(payments, 1);
    assert_eq!(fx.stored(r.id).status, ReservationStatus::Paid);
}

/// Concurrent issues for one user yield one token, created once.
pub fn concurrent_issues_for_one_user_yield_one_token<H: Harness>() {
    const THREADS: usize = 16;
    let fx = Fixture::<H>::empty(policy_with(1, None));
    let user = UserId::random();
    let results = race(THREADS, |_| fx.app.issue_token(user).unwrap());
    assert_eq!(results.iter().filter(|r| r.created).count(), 1);
    let values: BTreeSet<&str> = results.iter().map(|r| r.view.token.value.as_str()).collect();
    assert_eq!(values.len(), 1);
    // No sequence number was burnt by the losers.
    assert_eq!(fx.app.issue_token(UserId::random()).unwrap().view.token.seq, 2);
}

/// Concurrent admission ticks (as from several instances) together admit at most one batch.
pub fn concurrent_admissions_admit_at_most_one_batch<H: Harness>() {
    const THREADS: usize = 8;
    let fx = Fixture::<H>::empty(policy_with(5, None));
    for _ in 0..20 {
        fx.app.issue_token(UserId::random()).unwrap();
    }
    let results = race(THREADS, |_| fx.app.admit().unwrap());
    let admitted: u64 = results
        .iter()
        .map(|r| match r {
            AdmissionOutcome::Admitted(n) => *n,
            AdmissionOutcome::NotDue { .. } | AdmissionOutcome::Busy => 0,
        })
        .sum();
    assert_eq!(admitted, 5);
    assert_eq!(fx.ports.queue.cursor().unwrap().admitted_through, 5);
}
