//! Keyed (idempotent) charges and payments: the claim inside the unit of work
//! ([`domain::ports::AccountStore::credit`], [`domain::ports::PaymentStore::pay`]) and
//! [`domain::ports::IdempotencyStore`]: a success is recorded with its effect and replayed; a
//! refusal records nothing; a key is used for one request; records expire and are purged in
//! batches; concurrent duplicates make one effect.

use domain::account::{CreditOutcome, LedgerKind};
use domain::error::{ChargeError, PayError};
use domain::idempotency::{Claimed, Effect, Fingerprint, IdempotencyKey, Outcome};
use domain::money::{Won, BALANCE_LIMIT, MAX_CHARGE};
use domain::queue::TokenStatus;
use domain::reservation::ReservationStatus;
use domain::service::Policy;
use time::Duration;

use crate::concurrency::race;
use crate::fixture::{guard, keyed, render, Admission, Fixture};
use crate::Harness;

fn key(s: &str) -> IdempotencyKey {
    IdempotencyKey::parse(s).unwrap()
}

/// A keyed charge is recorded with its response; a retry with the same key and amount gets
/// that response again and changes nothing, however much later (within the TTL); keys are
/// scoped to the user.
pub fn a_keyed_charge_replays_its_recorded_response<H: Harness>() {
    let fx = Fixture::<H>::empty(Admission::default());
    let (user, other) = (fx.user(), fx.user());
    let expected = render(&Effect::Charged { user, balance: Won::new(5_000) });
    let first = fx.app.charge(user, 5_000, Some(keyed("k-1"))).unwrap();
    assert_eq!(first, Outcome::Fresh { value: Won::new(5_000), recorded: Some(expected.clone()) });
    assert_eq!(fx.app.charge(user, 5_000, Some(keyed("k-1"))).unwrap(), Outcome::Replayed(expected.clone()));
    fx.advance(Duration::hours(1));
    assert_eq!(fx.app.charge(user, 5_000, Some(keyed("k-1"))).unwrap(), Outcome::Replayed(expected.clone()));
    assert_eq!(fx.app.balance(user).unwrap(), Won::new(5_000));
    assert_eq!(fx.ledger(user).len(), 1);

    let record = fx.ports.idempotency.find(user, &key("k-1"), fx.now()).unwrap().unwrap();
    assert_eq!(record.fingerprint, Fingerprint::charge(user, Won::new(5_000)));
    assert_eq!(record.response, expected);
    // At the port: the claim finds the record and credits nothing.
    let k = key("k-1");
    let fingerprint = Fingerprint::charge(user, Won::new(5_000));
    let guard = guard(user, &k, &fingerprint, fx.now(), Duration::days(1));
    let req = fx.credit_request(user, 5_000, BALANCE_LIMIT);
    assert_eq!(fx.ports.accounts.credit(&req, Some(&guard)).unwrap(), Claimed::Recorded(record));
    assert_eq!(fx.app.balance(user).unwrap(), Won::new(5_000));

    // Another key runs; the same key for another user runs too.
    assert!(matches!(fx.app.charge(user, 5_000, Some(keyed("k-2"))).unwrap(), Outcome::Fresh { .. }));
    assert!(matches!(fx.app.charge(other, 5_000, Some(keyed("k-1"))).unwrap(), Outcome::Fresh { .. }));
    assert_eq!((fx.app.balance(user).unwrap(), fx.app.balance(other).unwrap()), (Won::new(10_000), Won::new(5_000)));
}

/// The same key for a different request (another amount, or a payment) is `KeyConflict::Reused` and
/// changes nothing.
pub fn a_key_reused_for_another_request_is_refused<H: Harness>() {
    let fx = Fixture::<H>::seeded();
    let who = fx.active_user();
    let user = who.user_id();
    fx.app.charge(user, 500_000, Some(keyed("k"))).unwrap();
    assert_eq!(
        fx.app.charge(user, 500_001, Some(keyed("k"))),
        Err(ChargeError::Key(domain::error::KeyConflict::Reused))
    );
    let r = fx.hold(&who, 0, 1);
    let before = fx.snapshot(&who, r.id);
    assert_eq!(
        fx.app.pay(who.token().value.as_str(), r.id, Some(keyed("k"))),
        Err(PayError::Key(domain::error::KeyConflict::Reused))
    );
    assert_eq!(fx.snapshot(&who, r.id), before);
    assert_eq!(fx.app.balance(user).unwrap(), Won::new(500_000));
}

/// A charge refused for the balance limit records nothing, so a retry with its key runs (and
/// succeeds once the balance has room).
pub fn a_refused_charge_records_nothing_and_its_retry_runs<H: Harness>() {
    let fx = Fixture::<H>::seeded();
    // At the port, with a small limit.
    let user = fx.user();
    let k = key("retry-me");
    let fingerprint = Fingerprint::charge(user, Won::new(60));
    let guard = guard(user, &k, &fingerprint, fx.now(), Duration::days(1));
    let refused = fx.ports.accounts.credit(&fx.credit_request(user, 60, Won::new(50)), Some(&guard)).unwrap();
    assert_eq!(refused, Claimed::Done(CreditOutcome::LimitExceeded(Won::ZERO)));
    assert_eq!(fx.ports.idempotency.find(user, &k, fx.now()).unwrap(), None);
    let ran = fx.ports.accounts.credit(&fx.credit_request(user, 60, Won::new(100)), Some(&guard)).unwrap();
    assert_eq!(ran, Claimed::Done(CreditOutcome::Credited(Won::new(60))));
    assert!(fx.ports.idempotency.find(user, &k, fx.now()).unwrap().is_some());

    // Through the use cases, with the contract's limit: refused, refused again, then after a
    // payment made room the same key runs.
    let who = fx.active_user();
    let rich = who.user_id();
    for _ in 0..10 {
        fx.charge(rich, MAX_CHARGE);
    }
    let over = ChargeError::BalanceLimit { balance: BALANCE_LIMIT, amount: Won::new(1_000) };
    assert_eq!(fx.app.charge(rich, 1_000, Some(keyed("top-up"))), Err(over.clone()));
    assert_eq!(fx.ports.idempotency.find(rich, &key("top-up"), fx.now()).unwrap(), None);
    assert_eq!(fx.app.charge(rich, 1_000, Some(keyed("top-up"))), Err(over));
    let r = fx.hold(&who, 0, 1);
    fx.pay(&who, r.id).unwrap();
    let fresh = fx.app.charge(rich, 1_000, Some(keyed("top-up"))).unwrap();
    let balance = BALANCE_LIMIT.get() - r.price.get() + 1_000;
    assert_eq!(
        fresh,
        Outcome::Fresh {
            value: Won::new(balance),
            recorded: Some(render(&Effect::Charged { user: rich, balance: Won::new(balance) }))
        }
    );
}

/// A keyed payment is recorded with its response; a retry gets it again even though the
/// payment used its token up, whichever token of the user presents it (a WAITING one too), and
/// changes nothing; the key with another reservation is `KeyConflict::Reused`.
pub fn a_keyed_payment_replays_after_its_token_was_used_up<H: Harness>() {
    let fx = Fixture::<H>::seeded();
    let who = fx.active_user();
    let user = who.user_id();
    fx.charge(user, 1_000_000);
    let r = fx.hold(&who, 0, 1);
    let token = who.token().value.as_str().to_owned();
    let Outcome::Fresh { value: payment, recorded: Some(recorded) } =
        fx.app.pay(&token, r.id, Some(keyed("pay-1"))).unwrap()
    else {
        panic!("a keyed payment runs and is recorded");
    };
    assert_eq!(recorded, render(&Effect::Paid(payment.clone())));
    assert_eq!(fx.token(who.token()).status, TokenStatus::Expired);

    assert_eq!(fx.app.pay(&token, r.id, Some(keyed("pay-1"))).unwrap(), Outcome::Replayed(recorded.clone()));
    let waiting = fx.app.issue_token(user).unwrap().view.token;
    assert_eq!(waiting.status, TokenStatus::Waiting);
    assert_eq!(fx.app.pay(waiting.value.as_str(), r.id, Some(keyed("pay-1"))).unwrap(), Outcome::Replayed(recorded));
    assert_eq!(fx.app.balance(user).unwrap().get(), 1_000_000 - payment.amount.get());
    assert_eq!(fx.ledger(user).iter().filter(|e| e.kind == LedgerKind::Payment).count(), 1);
    // Without the key the WAITING token is refused as usual.
    assert_eq!(fx.app.pay(waiting.value.as_str(), r.id, None), Err(PayError::TokenNotActive));

    fx.admit_all(std::slice::from_ref(&waiting));
    let again = fx.app.authorize(waiting.value.as_str()).unwrap();
    let r2 = fx.hold(&again, 0, 2);
    assert_eq!(
        fx.app.pay(waiting.value.as_str(), r2.id, Some(keyed("pay-1"))),
        Err(PayError::Key(domain::error::KeyConflict::Reused))
    );
    assert_eq!(fx.stored(r2.id).status, ReservationStatus::Held);
    assert_eq!(fx.token(&waiting).status, TokenStatus::Active);
}

/// A payment refused for an insufficient balance records nothing, so after a charge its retry
/// with the same key runs (and is then replayed).
pub fn a_refused_payment_records_nothing_and_its_retry_runs<H: Harness>() {
    let fx = Fixture::<H>::seeded();
    let who = fx.active_user();
    let token = who.token().value.as_str().to_owned();
    let r = fx.hold(&who, 0, 1);
    let refused = fx.app.pay(&token, r.id, Some(keyed("pay")));
    assert_eq!(refused, Err(PayError::InsufficientBalance { balance: Won::ZERO, price: r.price }));
    assert_eq!(fx.ports.idempotency.find(who.user_id(), &key("pay"), fx.now()).unwrap(), None);
    fx.charge(who.user_id(), r.price.get());
    let Outcome::Fresh { recorded: Some(recorded), .. } = fx.app.pay(&token, r.id, Some(keyed("pay"))).unwrap() else {
        panic!("the retry runs");
    };
    assert_eq!(fx.app.pay(&token, r.id, Some(keyed("pay"))).unwrap(), Outcome::Replayed(recorded));
    assert_eq!(fx.app.balance(who.user_id()).unwrap(), Won::ZERO);
}

/// A record is kept until its exact `expires_at`: found one microsecond before, gone at it
/// (a retry then runs again); `purge_expired(now, limit)` deletes at most `limit` expired
/// records per call and never an unexpired one.
pub fn records_expire_at_their_time_and_are_purged_in_batches<H: Harness>() {
    let mut fx = Fixture::<H>::empty(Admission::default());
    fx.set_policy(Policy { idempotency_ttl: Duration::seconds(100), ..Policy::default() });
    let early: Vec<_> = (0..5).map(|_| fx.user()).collect();
    for u in &early {
        fx.app.charge(*u, 1_000, Some(keyed("k"))).unwrap();
    }
    let expiry = fx.now() + Duration::seconds(100);
    fx.advance(Duration::seconds(10));
    let late: Vec<_> = (0..2).map(|_| fx.user()).collect();
    for u in &late {
        fx.app.charge(*u, 1_000, Some(keyed("k"))).unwrap();
    }

    let just_before = expiry - Duration::microseconds(1);
    assert!(fx.ports.idempotency.find(early[0], &key("k"), just_before).unwrap().is_some());
    assert_eq!(fx.ports.idempotency.purge_expired(just_before, 10).unwrap(), 0);
    assert_eq!(fx.ports.idempotency.find(early[0], &key("k"), expiry).unwrap(), None, "expired, not yet purged");
    let counts: Vec<u64> = (0..4).map(|_| fx.ports.idempotency.purge_expired(expiry, 2).unwrap()).collect();
    assert_eq!(counts, vec![2, 2, 1, 0]);
    assert!(late.iter().all(|u| fx.ports.idempotency.find(*u, &key("k"), expiry).unwrap().is_some()));

    // An expired key runs again.
    fx.clock.set(expiry);
    assert!(matches!(fx.app.charge(early[0], 1_000, Some(keyed("k"))).unwrap(), Outcome::Fresh { .. }));
    assert_eq!(fx.app.balance(early[0]).unwrap(), Won::new(2_000));

    fx.clock.set(expiry + Duration::seconds(10));
    fx.set_policy(Policy { sweep_batch: 1, sweep_batches_per_tick: 10, ..Policy::default() });
    assert_eq!(fx.app.purge_idempotency_keys().unwrap(), 2, "the two late records, one per batch");
    assert!(fx.ports.idempotency.find(early[0], &key("k"), fx.now()).unwrap().is_some(), "the re-run's record");
}

/// 64 concurrent charges with one key: exactly one runs; each other one gets its replay or
/// `KeyConflict::InFlight`. One effect.
pub fn concurrent_duplicate_charges_have_one_effect<H: Harness>() {
    const THREADS: usize = 64;
    let fx = Fixture::<H>::empty(Admission::default());
    let user = fx.user();
    let expected = render(&Effect::Charged { user, balance: Won::new(1_000) });
    let w = &fx.world;
    let results = race(THREADS, |_| w.app.charge(user, 1_000, Some(keyed("dup"))));
    let fresh = results.iter().filter(|r| matches!(r, Ok(Outcome::Fresh { .. }))).count();
    assert_eq!(fresh, 1, "{results:?}");
    for r in &results {
        match r {
            Ok(Outcome::Fresh { value, recorded }) => {
                assert_eq!((value, recorded), (&Won::new(1_000), &Some(expected.clone())))
            }
            Ok(Outcome::Replayed(response)) => assert_eq!(response, &expected),
            Err(e) => assert_eq!(e, &ChargeError::Key(domain::error::KeyConflict::InFlight)),
        }
    }
    assert_eq!(fx.app.balance(user).unwrap(), Won::new(1_000));
    assert_eq!(fx.ledger(user).len(), 1);
}

/// 20 concurrent payments of one reservation with one token and one key: exactly one runs;
/// each other one gets its replay or `KeyConflict::InFlight`. One debit.
pub fn concurrent_duplicate_payments_have_one_effect<H: Harness>() {
    const THREADS: usize = 20;
    let fx = Fixture::<H>::seeded();
    let who = fx.active_user();
    fx.charge(who.user_id(), 1_000_000);
    let r = fx.hold(&who, 0, 1);
    let token = who.token().value.as_str().to_owned();
    let w = &fx.world;
    let results = race(THREADS, |_| w.app.pay(&token, r.id, Some(keyed("dup-pay"))));
    let fresh: Vec<_> = results
        .iter()
        .filter_map(|r| match r {
            Ok(Outcome::Fresh { recorded, .. }) => recorded.clone(),
            _ => None,
        })
        .collect();
    assert_eq!(fresh.len(), 1, "{results:?}");
    for r in &results {
        match r {
            Ok(Outcome::Fresh { .. }) => {}
            Ok(Outcome::Replayed(response)) => assert_eq!(response, &fresh[0]),
            Err(e) => assert_eq!(e, &PayError::Key(domain::error::KeyConflict::InFlight)),
        }
    }
    assert_eq!(fx.app.balance(who.user_id()).unwrap().get(), 1_000_000 - r.price.get());
    assert_eq!(fx.stored(r.id).status, ReservationStatus::Paid);
    assert_eq!(fx.ledger(who.user_id()).iter().filter(|e| e.kind == LedgerKind::Payment).count(), 1);
}
