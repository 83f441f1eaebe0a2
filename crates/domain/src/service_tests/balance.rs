//! Steps 8 and 9: balances, their history, charges.

use super::*;

fn entry(user: UserId, amount: i64) -> LedgerEntry {
    LedgerEntry {
        id: LedgerEntryId::from_uuid(id()),
        user_id: user,
        kind: LedgerKind::Charge,
        amount: Won::new(amount),
        balance_after: Won::new(amount),
        at: t0(),
        payment_id: None,
        reservation_id: None,
    }
}

#[test]
fn balance_is_the_stores() {
    let w = World::new().accounts(FakeAccounts { balance: Ok(Won::new(7)), ..FakeAccounts::default() });
    assert_eq!(w.app().balance(user()), Ok(Won::new(7)));
    let w = World::new().accounts(FakeAccounts { balance: Err(down()), ..FakeAccounts::default() });
    assert_eq!(w.app().balance(user()), Err(BalanceError::Store(down())));
}

#[test]
fn history_asks_for_one_more_than_the_page_to_know_whether_another_follows() {
    let who = user();
    let entries: Vec<LedgerEntry> = (1..=4).map(|i| entry(who, i)).collect();
    let before = Some(LedgerEntryId::from_uuid(id()));
    let w = World::new().accounts(FakeAccounts { ledger: Ok(Some(entries.clone())), ..FakeAccounts::default() });
    let accounts = w.accounts.clone();
    let page = w.app().balance_history(who, before, Some(3)).unwrap();
    assert_eq!(page.entries, entries[..3].to_vec());
    assert_eq!(page.next_before, Some(entries[2].id));
    assert_eq!(lock(&accounts.queries).clone(), vec![(who, LedgerQuery { before, limit: 4 })]);

    let w = World::new().accounts(FakeAccounts { ledger: Ok(Some(entries[..3].to_vec())), ..FakeAccounts::default() });
    let page = w.app().balance_history(who, None, Some(3)).unwrap();
    assert_eq!((page.entries.len(), page.next_before), (3, None), "exactly a page: no next one");

    let w = World::new().accounts(FakeAccounts { ledger: Ok(Some(Vec::new())), ..FakeAccounts::default() });
    let accounts = w.accounts.clone();
    let page = w.app().balance_history(who, None, None).unwrap();
    assert_eq!((page.entries.len(), page.next_before), (0, None));
    assert_eq!(lock(&accounts.queries)[0].1, LedgerQuery { before: None, limit: 51 }, "50 by default");
}

#[test]
fn history_refuses_a_bad_limit_without_asking_and_an_unknown_before() {
    let w = World::new();
    let accounts = w.accounts.clone();
    let app = w.app();
    for limit in [0, 101] {
        assert_eq!(app.balance_history(user(), None, Some(limit)), Err(HistoryError::InvalidLimit));
    }
    assert!(lock(&accounts.queries).is_empty());
    let app = World::new().accounts(FakeAccounts { ledger: Ok(Some(Vec::new())), ..FakeAccounts::default() }).app();
    assert!(app.balance_history(user(), None, Some(1)).is_ok());
    assert!(app.balance_history(user(), None, Some(100)).is_ok());

    let w = World::new().accounts(FakeAccounts { ledger: Ok(None), ..FakeAccounts::default() });
    let before = Some(LedgerEntryId::from_uuid(id()));
    assert_eq!(w.app().balance_history(user(), before, None), Err(HistoryError::UnknownBefore));
    let w = World::new().accounts(FakeAccounts { ledger: Err(down()), ..FakeAccounts::default() });
    assert_eq!(w.app().balance_history(user(), None, None), Err(HistoryError::Store(down())));
}

#[test]
fn a_charge_outside_one_to_a_billion_is_refused_without_asking() {
    let w = World::new();
    let accounts = w.accounts.clone();
    let app = w.app();
    for amount in [0, -1, 1_000_000_001, i64::MIN] {
        assert_eq!(app.charge(user(), amount, None), Err(ChargeError::InvalidAmount), "{amount}");
    }
    assert!(lock(&accounts.credits).is_empty());
}

#[test]
fn a_charge_credits_under_the_contracts_limit_with_a_new_entry_at_now() {
    let who = user();
    for amount in [1, 1_000_000_000] {
        let w = World::new().accounts(FakeAccounts {
            credit: Ok(Claimed::Done(CreditOutcome::Credited(Won::new(amount + 5)))),
            ..FakeAccounts::default()
        });
        let accounts = w.accounts.clone();
        let outcome = w.app().charge(who, amount, None);
        assert_eq!(outcome, Ok(Outcome::Fresh { value: Won::new(amount + 5), recorded: None }));
        let (req, guard) = lock(&accounts.credits)[0].clone();
        assert_eq!((req.user, req.amount, req.limit, req.at), (who, Won::new(amount), BALANCE_LIMIT, t0()));
        assert_eq!(guard, None);
    }
}

#[test]
fn a_charge_over_the_limit_reports_the_unchanged_balance() {
    let w = World::new().accounts(FakeAccounts {
        credit: Ok(Claimed::Done(CreditOutcome::LimitExceeded(Won::new(9_999_999_999)))),
        ..FakeAccounts::default()
    });
    assert_eq!(
        w.app().charge(user(), 2, None),
        Err(ChargeError::BalanceLimit { balance: Won::new(9_999_999_999), amount: Won::new(2) })
    );
    let w = World::new().accounts(FakeAccounts { credit: Err(down()), ..FakeAccounts::default() });
    assert_eq!(w.app().charge(user(), 2, None), Err(ChargeError::Store(down())));
}

#[test]
fn a_keyed_charge_is_guarded_recorded_and_replayed_by_the_store() {
    let who = user();
    let mut w = World::new().accounts(FakeAccounts {
        credit: Ok(Claimed::Done(CreditOutcome::Credited(Won::new(300)))),
        ..FakeAccounts::default()
    });
    w.policy = Policy { idempotency_ttl: secs(60), ..Policy::default() };
    let accounts = w.accounts.clone();
    let outcome = w.app().charge(who, 300, keyed("c"));
    let recorded = render(&Effect::Charged { user: who, balance: Won::new(300) });
    assert_eq!(outcome, Ok(Outcome::Fresh { value: Won::new(300), recorded: Some(recorded) }));
    let guard = lock(&accounts.credits)[0].1.clone().unwrap();
    let fingerprint = Fingerprint::charge(who, Won::new(300));
    assert_eq!(
        guard,
        GuardSeen {
            user: who,
            key: key("c"),
            fingerprint: fingerprint.clone(),
            now: t0(),
            expires_at: t0() + secs(60)
        }
    );

    let same = record(fingerprint, "charged before");
    let cases = [
        (Claimed::Recorded(same.clone()), Ok(Outcome::Replayed(same.response.clone()))),
        (
            Claimed::Recorded(record(Fingerprint::charge(who, Won::new(301)), "x")),
            Err(ChargeError::Key(crate::error::KeyConflict::Reused)),
        ),
        (Claimed::InFlight, Err(ChargeError::Key(crate::error::KeyConflict::InFlight))),
    ];
    for (claimed, expected) in cases {
        let w = World::new().accounts(FakeAccounts { credit: Ok(claimed), ..FakeAccounts::default() });
        assert_eq!(w.app().charge(who, 300, keyed("c")), expected);
    }
}
