//! [`domain::ports::AccountStore`]: balances, credits under a limit (`money::credit_fits`),
//! the ledger and its pages.

use domain::account::{CreditOutcome, CreditRequest, LedgerKind, LedgerQuery};
use domain::error::{ChargeError, HistoryError};
use domain::idempotency::Claimed;
use domain::ids::{LedgerEntryId, UserId};
use domain::money::{Won, BALANCE_LIMIT, MAX_CHARGE};
use time::Duration;

use crate::fixture::World;
use crate::fixture::{Admission, Fixture};
use crate::Harness;

impl World {
    /// A credit request of `amount` to `user` under `limit`, with a new entry id, now.
    #[must_use]
    pub fn credit_request(&self, user: UserId, amount: i64, limit: Won) -> CreditRequest {
        CreditRequest {
            user,
            amount: Won::new(amount),
            limit,
            entry: LedgerEntryId::from_uuid(self.ports.random.uuid()),
            at: self.now(),
        }
    }

    /// Credits without a key through the port.
    pub fn credit(&self, user: UserId, amount: i64, limit: Won) -> CreditOutcome {
        match self.ports.accounts.credit(&self.credit_request(user, amount, limit), None).unwrap() {
            Claimed::Done(outcome) => outcome,
            other => panic!("an unkeyed credit answered {other:?}"),
        }
    }
}

/// A user never charged has 0 and no ledger.
pub fn unknown_user_has_zero_balance_and_empty_ledger<H: Harness>() {
    let fx = Fixture::<H>::empty(Admission::default());
    let user = fx.user();
    assert_eq!(fx.ports.accounts.balance(user).unwrap(), Won::ZERO);
    assert_eq!(fx.app.balance(user).unwrap(), Won::ZERO);
    assert!(fx.ledger(user).is_empty());
    let page = fx.app.balance_history(user, None, None).unwrap();
    assert_eq!((page.entries.len(), page.next_before), (0, None));
}

/// A credit adds to the balance and appends a CHARGE entry with the given id and time.
pub fn credit_adds_and_records_a_charge<H: Harness>() {
    let fx = Fixture::<H>::empty(Admission::default());
    let (user, other) = (fx.user(), fx.user());
    let req = fx.credit_request(user, 5_000, BALANCE_LIMIT);
    let out = fx.ports.accounts.credit(&req, None).unwrap();
    assert_eq!(out, Claimed::Done(CreditOutcome::Credited(Won::new(5_000))));
    fx.advance(Duration::seconds(1));
    assert_eq!(fx.charge(user, 2_500), Won::new(7_500));
    assert_eq!(fx.ports.accounts.balance(user).unwrap(), Won::new(7_500));
    assert_eq!(fx.ports.accounts.balance(other).unwrap(), Won::ZERO);

    let ledger = fx.ledger(user);
    assert_eq!(ledger.len(), 2);
    let (newest, oldest) = (&ledger[0], &ledger[1]);
    assert_eq!((oldest.id, oldest.user_id, oldest.kind), (req.entry, user, LedgerKind::Charge));
    assert_eq!((oldest.amount, oldest.balance_after), (Won::new(5_000), Won::new(5_000)));
    assert_eq!(oldest.at, fx.now() - Duration::seconds(1));
    assert_eq!((oldest.payment_id, oldest.reservation_id), (None, None));
    assert_eq!((newest.amount, newest.balance_after, newest.at), (Won::new(2_500), Won::new(7_500), fx.now()));
    assert!(fx.ledger(other).is_empty());
}

/// A credit that would pass the limit changes nothing and reports the current balance;
/// reaching the limit exactly is allowed.
pub fn credit_over_the_limit_changes_nothing<H: Harness>() {
    let fx = Fixture::<H>::empty(Admission::default());
    let user = fx.user();
    let limit = Won::new(100);
    assert_eq!(fx.credit(user, 60, limit), CreditOutcome::Credited(Won::new(60)));
    assert_eq!(fx.credit(user, 41, limit), CreditOutcome::LimitExceeded(Won::new(60)));
    assert_eq!(fx.ports.accounts.balance(user).unwrap(), Won::new(60));
    assert_eq!(fx.ledger(user).len(), 1);
    assert_eq!(fx.credit(user, 40, limit), CreditOutcome::Credited(Won::new(100)));
    assert_eq!(fx.credit(user, 1, limit), CreditOutcome::LimitExceeded(Won::new(100)));
    assert_eq!(fx.ledger(user).len(), 2);

    // Through the use case with the contract's limit of 10,000,000,000.
    let rich = fx.user();
    for _ in 0..10 {
        fx.charge(rich, MAX_CHARGE);
    }
    assert_eq!(fx.app.balance(rich).unwrap(), BALANCE_LIMIT);
    assert_eq!(
        fx.app.charge(rich, 1, None),
        Err(ChargeError::BalanceLimit { balance: BALANCE_LIMIT, amount: Won::new(1) })
    );
    assert_eq!(fx.app.balance(rich).unwrap(), BALANCE_LIMIT);
    assert_eq!(fx.ledger(rich).len(), 10);
    assert_eq!(fx.app.charge(rich, 0, None), Err(ChargeError::InvalidAmount));
}

/// After charges and a payment the ledger (newest first) sums to the balance, and each
/// entry's `balance_after` is the running sum.
pub fn ledger_sums_to_the_balance<H: Harness>() {
    let fx = Fixture::<H>::seeded();
    let who = fx.active_user();
    let user = who.user_id();
    // One second apart, so "newest first" does not depend on how a store breaks ties.
    fx.charge(user, 200_000);
    fx.advance(Duration::seconds(1));
    fx.charge(user, 150_000);
    fx.advance(Duration::seconds(1));
    let r = fx.hold(&who, 0, 20);
    let payment = fx.pay(&who, r.id).unwrap();
    fx.advance(Duration::seconds(1));
    fx.charge(user, 1);

    let balance = fx.app.balance(user).unwrap();
    assert_eq!(balance.get(), 350_001 - r.price.get());
    let mut ledger = fx.ledger(user);
    ledger.reverse();
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
    assert_eq!(pay_entry.at, payment.paid_at);
}

/// The ledger reads newest first, at most `limit` entries, older than `before` when given;
/// `before` that is not an entry of this user is `None`. The use case pages through it with
/// `next_before`.
pub fn ledger_pages_newest_first_before_an_entry_of_the_user<H: Harness>() {
    let fx = Fixture::<H>::empty(Admission::default());
    let (user, other) = (fx.user(), fx.user());
    let mut ids = Vec::new();
    for i in 1..=7 {
        let req = fx.credit_request(user, i * 100, BALANCE_LIMIT);
        ids.push(req.entry);
        fx.ports.accounts.credit(&req, None).unwrap();
        fx.advance(Duration::seconds(1));
    }
    let foreign = fx.credit_request(other, 1, BALANCE_LIMIT);
    fx.ports.accounts.credit(&foreign, None).unwrap();

    let read = |before, limit| {
        fx.ports
            .accounts
            .ledger(user, &LedgerQuery { before, limit })
            .unwrap()
            .map(|entries| entries.iter().map(|e| e.amount.get()).collect::<Vec<_>>())
    };
    assert_eq!(read(None, 3), Some(vec![700, 600, 500]));
    assert_eq!(read(Some(ids[4]), 3), Some(vec![400, 300, 200]));
    assert_eq!(read(Some(ids[1]), 3), Some(vec![100]));
    assert_eq!(read(Some(ids[0]), 3), Some(vec![]));
    assert_eq!(read(None, 100).map(|v| v.len()), Some(7));
    assert_eq!(read(Some(foreign.entry), 3), None, "another user's entry");
    assert_eq!(read(Some(LedgerEntryId::from_uuid(fx.ports.random.uuid())), 3), None, "no such entry");

    let page = fx.app.balance_history(user, None, Some(3)).unwrap();
    assert_eq!(page.entries.iter().map(|e| e.amount.get()).collect::<Vec<_>>(), vec![700, 600, 500]);
    assert_eq!(page.next_before, Some(ids[4]));
    let page = fx.app.balance_history(user, page.next_before, Some(3)).unwrap();
    assert_eq!(page.entries.iter().map(|e| e.amount.get()).collect::<Vec<_>>(), vec![400, 300, 200]);
    let page = fx.app.balance_history(user, page.next_before, Some(3)).unwrap();
    assert_eq!((page.entries.len(), page.next_before), (1, None));
    let page = fx.app.balance_history(user, None, None).unwrap();
    assert_eq!((page.entries.len(), page.next_before), (7, None));
    assert_eq!(fx.app.balance_history(user, Some(foreign.entry), None), Err(HistoryError::UnknownBefore));
    assert_eq!(fx.app.balance_history(user, None, Some(0)), Err(HistoryError::InvalidLimit));
}
