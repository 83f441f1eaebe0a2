//! [`domain::ports::AccountStore`]: balances, credits under a limit, the ledger.

use domain::account::{CreditOutcome, LedgerKind};
use domain::error::ChargeError;
use domain::ids::{LedgerEntryId, UserId};
use domain::money::{Won, BALANCE_LIMIT, MAX_CHARGE};
use time::Duration;

use crate::fixture::{policy, Fixture};
use crate::Harness;

/// A user never charged has 0 and no ledger.
pub fn unknown_user_has_zero_balance_and_empty_ledger<H: Harness>() {
    let fx = Fixture::<H>::empty(policy());
    let user = UserId::random();
    assert_eq!(fx.ports.accounts.balance(user).unwrap(), Won::ZERO);
    assert_eq!(fx.app.balance(user).unwrap(), Won::ZERO);
    assert!(fx.ports.accounts.ledger(user).unwrap().is_empty());
}

/// A credit adds to the balance and appends a CHARGE entry with the given id and time.
pub fn credit_adds_and_records_a_charge<H: Harness>() {
    let fx = Fixture::<H>::empty(policy());
    let (user, other) = (UserId::random(), UserId::random());
    let entry = LedgerEntryId::random();
    let out = fx.ports.accounts.credit(user, Won::new(5_000), BALANCE_LIMIT, entry, fx.now()).unwrap();
    assert_eq!(out, CreditOutcome::Credited(Won::new(5_000)));
    fx.advance(Duration::seconds(1));
    assert_eq!(fx.app.charge(user, 2_500), Ok(Won::new(7_500)));
    assert_eq!(fx.ports.accounts.balance(user).unwrap(), Won::new(7_500));
    assert_eq!(fx.ports.accounts.balance(other).unwrap(), Won::ZERO);

    let ledger = fx.ports.accounts.ledger(user).unwrap();
    assert_eq!(ledger.len(), 2);
    let first = &ledger[0];
    assert_eq!((first.id, first.user_id, first.kind), (entry, user, LedgerKind::Charge));
    assert_eq!((first.amount, first.balance_after), (Won::new(5_000), Won::new(5_000)));
    assert_eq!(first.at, fx.now() - Duration::seconds(1));
    assert_eq!((first.payment_id, first.reservation_id), (None, None));
    let second = &ledger[1];
    assert_eq!((second.amount, second.balance_after, second.at), (Won::new(2_500), Won::new(7_500), fx.now()));
    assert!(fx.ports.accounts.ledger(other).unwrap().is_empty());
}

/// A credit that would pass the limit changes nothing and reports the current balance;
/// reaching the limit exactly is allowed.
pub fn credit_over_the_limit_changes_nothing<H: Harness>() {
    let fx = Fixture::<H>::empty(policy());
    let user = UserId::random();
    let limit = Won::new(100);
    let credit = |amount| fx.ports.accounts.credit(user, Won::new(amount), limit, LedgerEntryId::random(), fx.now());
    assert_eq!(credit(60).unwrap(), CreditOutcome::Credited(Won::new(60)));
    assert_eq!(credit(41).unwrap(), CreditOutcome::LimitExceeded(Won::new(60)));
    assert_eq!(fx.ports.accounts.balance(user).unwrap(), Won::new(60));
    assert_eq!(fx.ports.accounts.ledger(user).unwrap().len(), 1);
    assert_eq!(credit(40).unwrap(), CreditOutcome::Credited(Won::new(100)));
    assert_eq!(credit(1).unwrap(), CreditOutcome::LimitExceeded(Won::new(100)));
    assert_eq!(fx.ports.accounts.ledger(user).unwrap().len(), 2);

    // Through the use case with the contract's limit of 10,000,000,000.
    let rich = UserId::random();
    for _ in 0..10 {
        fx.app.charge(rich, MAX_CHARGE).unwrap();
    }
    assert_eq!(fx.app.balance(rich).unwrap(), BALANCE_LIMIT);
    assert_eq!(fx.app.charge(rich, 1), Err(ChargeError::BalanceLimit { balance: BALANCE_LIMIT, amount: Won::new(1) }));
    assert_eq!(fx.app.balance(rich).unwrap(), BALANCE_LIMIT);
    assert_eq!(fx.app.ledger(rich).unwrap().len(), 10);
}

/// After charges and a payment the ledger's amounts sum to the balance, and each entry's
/// `balance_after` is the running sum.
pub fn ledger_sums_to_the_balance<H: Harness>() {
    let fx = Fixture::<H>::seeded();
    let who = fx.active_user();
    let user = who.user_id();
    // One second apart, so "oldest first" does not depend on how a store breaks ties.
    fx.charge(user, 200_000);
    fx.advance(Duration::seconds(1));
    fx.charge(user, 150_000);
    fx.advance(Duration::seconds(1));
    let r = fx.hold(&who, 0, 20);
    let payment = fx.app.pay(&who, r.id).unwrap();
    fx.advance(Duration::seconds(1));
    fx.charge(user, 1);

    let balance = fx.app.balance(user).unwrap();
    assert_eq!(balance.get(), 350_001 - r.price.get());
    let ledger = fx.app.ledger(user).unwrap();
    assert_eq!(
        ledger.iter().map(|e| e.kind).collect::<Vec<_>>(),
        [LedgerKind::Charge, LedgerKind::Charge, LedgerKind::Payment, LedgerKind::Charge]
    );
    let mut running = 0;
    for e in &ledger {
        running += e.amount.get();
        assert_eq!(e.balance_after.get(), running);
    }
    assert_eq!(running, balance.get());
    let pay_entry = &ledger[2];
    assert_eq!(pay_entry.amount, Won::new(-r.price.get()));
    assert_eq!((pay_entry.payment_id, pay_entry.reservation_id), (Some(payment.id), Some(r.id)));
}
