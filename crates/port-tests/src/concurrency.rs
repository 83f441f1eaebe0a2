//! Real threads racing on one seat, one user's holds, one account, one reservation, and the
//! hold release. Each case asserts the invariant (one winner, exact sum), never a timing. The
//! queue's races are in [`crate::queue`], the keys' in [`crate::idempotency`].

use std::collections::BTreeSet;
use std::sync::Barrier;
use std::thread;

use domain::account::LedgerKind;
use domain::error::{PayError, ReserveError};
use domain::reservation::ReservationStatus;
use time::Duration;

use crate::fixture::{Admission, Fixture};
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
    let w = &fx.world;
    let results = race(THREADS, |i| w.app.reserve(&users[i], schedule, seat));
    let winners: Vec<_> = results.iter().filter_map(|r| r.as_ref().ok()).collect();
    assert_eq!(winners.len(), 1, "exactly one hold wins");
    assert!(results.iter().filter(|r| r.is_err()).all(|r| *r == Err(ReserveError::SeatUnavailable)));
    let seats = fx.ports.catalogue.seats(schedule).unwrap().unwrap();
    let claim = seats.iter().find(|s| s.seat.id == seat).unwrap().claim.unwrap();
    assert_eq!((claim.reservation_id, claim.status), (winners[0].id, ReservationStatus::Held));
}

/// 64 concurrent holds by one user on 64 different seats never take them past
/// `MAX_HOLDS_PER_USER` (4): exactly four win, the rest are `HoldLimit`.
pub fn concurrent_holds_of_one_user_never_pass_the_hold_limit<H: Harness>() {
    const THREADS: usize = 64;
    let fx = Fixture::<H>::seeded();
    let who = fx.active_user();
    let seats: Vec<_> = (0..THREADS)
        .map(|i| {
            let (s, n) = if i < 50 { (0, i + 1) } else { (1, i - 49) };
            (fx.schedule(s).id, fx.seat(s, u32::try_from(n).unwrap()).id)
        })
        .collect();
    let w = &fx.world;
    let results = race(THREADS, |i| w.app.reserve(&who, seats[i].0, seats[i].1));
    let held: Vec<_> = results.iter().filter_map(|r| r.as_ref().ok()).collect();
    assert_eq!(held.len(), 4, "{results:?}");
    assert!(results.iter().filter(|r| r.is_err()).all(|r| *r == Err(ReserveError::HoldLimit { max: 4 })));
    let claimed: usize = [0, 1]
        .iter()
        .map(|s| {
            fx.ports.catalogue.seats(fx.schedule(*s).id).unwrap().unwrap().iter().filter(|r| r.claim.is_some()).count()
        })
        .sum();
    assert_eq!(claimed, 4);
}

/// 200 concurrent charges of one account lose no update: the balance is the exact sum, the
/// ledger has 200 entries that sum to it, and every intermediate balance appears once.
pub fn concurrent_charges_lose_no_update<H: Harness>() {
    const THREADS: i64 = 200;
    const AMOUNT: i64 = 1_000;
    let fx = Fixture::<H>::empty(Admission::default());
    let user = fx.user();
    let w = &fx.world;
    race(usize::try_from(THREADS).unwrap(), |_| w.charge(user, AMOUNT));
    assert_eq!(fx.app.balance(user).unwrap().get(), THREADS * AMOUNT);
    let ledger = fx.ledger(user);
    assert_eq!(ledger.len(), usize::try_from(THREADS).unwrap());
    assert_eq!(ledger.iter().map(|e| e.amount.get()).sum::<i64>(), THREADS * AMOUNT);
    let afters: BTreeSet<i64> = ledger.iter().map(|e| e.balance_after.get()).collect();
    assert_eq!(afters, (1..=THREADS).map(|i| i * AMOUNT).collect());
}

/// Of 20 concurrent payments of one reservation exactly one succeeds; the others see
/// `AlreadyPaid` (or `TokenExpired`, when they read the token after the winner used it up) and
/// the balance is debited once.
pub fn concurrent_payments_of_one_reservation_debit_once<H: Harness>() {
    const THREADS: usize = 20;
    let fx = Fixture::<H>::seeded();
    let who = fx.active_user();
    fx.charge(who.user_id(), 10_000_000);
    let r = fx.hold(&who, 0, 3);
    let w = &fx.world;
    let results = race(THREADS, |_| w.pay(&who, r.id));
    assert_eq!(results.iter().filter(|r| r.is_ok()).count(), 1, "exactly one payment wins");
    assert!(results
        .iter()
        .filter(|r| r.is_err())
        .all(|r| matches!(r, Err(PayError::AlreadyPaid | PayError::TokenExpired))));
    assert_eq!(fx.app.balance(who.user_id()).unwrap().get(), 10_000_000 - r.price.get());
    let payments = fx.ledger(who.user_id()).into_iter().filter(|e| e.kind == LedgerKind::Payment).count();
    assert_eq!(payments, 1);
    assert_eq!(fx.stored(r.id).status, ReservationStatus::Paid);
}

/// A payment racing 50 charges of the same account loses no update: the balance is exact and
/// the ledger, oldest first, is a chain of running sums.
pub fn a_payment_racing_charges_loses_no_update<H: Harness>() {
    const CHARGES: i64 = 50;
    let fx = Fixture::<H>::seeded();
    let who = fx.active_user();
    fx.charge(who.user_id(), 1_000_000);
    let r = fx.hold(&who, 0, 1);
    let w = &fx.world;
    let results = race(usize::try_from(CHARGES).unwrap() + 1, |i| {
        if i == 0 {
            w.pay(&who, r.id).map(|_| ())
        } else {
            w.charge(who.user_id(), 1_000);
            Ok(())
        }
    });
    assert!(results.iter().all(Result::is_ok), "{results:?}");
    let balance = fx.app.balance(who.user_id()).unwrap().get();
    assert_eq!(balance, 1_000_000 + CHARGES * 1_000 - r.price.get());
    let mut ledger = fx.ledger(who.user_id());
    ledger.reverse();
    let mut running = 0;
    for e in &ledger {
        running += e.amount.get();
        assert_eq!(e.balance_after.get(), running, "{ledger:?}");
    }
    assert_eq!(running, balance);
}

/// A payment one microsecond before the hold lapses races a release sweep at the lapse, round
/// after round: exactly one of them wins each time.
pub fn a_payment_racing_the_release_at_the_deadline_has_one_winner<H: Harness>() {
    const ROUNDS: usize = 12;
    let fx = Fixture::<H>::seeded();
    let (mut paid, mut released) = (0, 0);
    for round in 0..ROUNDS {
        let who = fx.active_user();
        let seat = u32::try_from(round).unwrap() + 1;
        fx.charge(who.user_id(), 1_000_000);
        let r = fx.hold(&who, 0, seat);
        fx.clock.set(r.held_until - Duration::microseconds(1));
        let w = &fx.world;
        let results = race(2, |i| {
            if i == 0 {
                (Some(w.pay(&who, r.id)), 0)
            } else {
                (None, w.ports.reservations.release_lapsed(r.held_until, 100).unwrap())
            }
        });
        let (pay, swept) = (results[0].0.clone().unwrap(), results[1].1);
        match (&pay, swept) {
            (Ok(_), 0) => paid += 1,
            (Err(PayError::HoldExpired), 1) => released += 1,
            other => panic!("round {round}: both or neither won: {other:?}"),
        }
        let expected = if pay.is_ok() { ReservationStatus::Paid } else { ReservationStatus::Expired };
        assert_eq!(fx.stored(r.id).status, expected);
        let balance = fx.app.balance(who.user_id()).unwrap().get();
        assert_eq!(balance, if pay.is_ok() { 1_000_000 - r.price.get() } else { 1_000_000 });
    }
    assert_eq!(paid + released, ROUNDS);
}

/// Concurrent release sweeps (as from several instances) together change each lapsed hold
/// once.
pub fn concurrent_release_sweeps_change_each_hold_once<H: Harness>() {
    const THREADS: usize = 8;
    let fx = Fixture::<H>::seeded();
    let users = fx.active_users(3);
    let mut holds = Vec::new();
    for (i, who) in users.iter().enumerate() {
        for n in 1..=4 {
            holds.push(fx.hold(who, 2, u32::try_from(i).unwrap() * 4 + n));
        }
    }
    let lapse = fx.now() + Duration::seconds(300);
    let w = &fx.world;
    let counts = race(THREADS, |_| {
        let mut total = 0;
        loop {
            let n = w.ports.reservations.release_lapsed(lapse, 2).unwrap();
            if n == 0 {
                return total;
            }
            total += n;
        }
    });
    assert_eq!(counts.iter().sum::<u64>(), 12);
    assert!(holds.iter().all(|r| fx.stored(r.id).status == ReservationStatus::Expired));
}
