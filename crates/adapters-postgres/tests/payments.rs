//! The payment unit of work beyond the domain's own sequence: the adapter queues the writes
//! after the debit and sends the usual four as one statement, so the other orders (sent one
//! by one) and a failing queued write (rolled back with everything else) are checked here.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    reason = "test code: a failed expectation must fail the test"
)]

mod common;

use common::{assert_consistent, Postgres};
use domain::account::{LedgerEntry, LedgerKind};
use domain::error::PayError;
use domain::ids::{LedgerEntryId, PaymentId};
use domain::money::Won;
use domain::payment::Payment;
use domain::ports::{DebitOutcome, PaymentTx, PaymentUnitOfWork, StoreError};
use domain::queue::TokenStatus;
use domain::reservation::{Reservation, ReservationStatus};
use port_tests::fixture::Fixture;

type Fx = Fixture<Postgres>;

/// Debits `r`'s price and builds the payment and its ledger entry, as the domain does.
fn debit_and_build(tx: &mut dyn PaymentTx, r: &Reservation, fx: &Fx) -> (Payment, LedgerEntry) {
    let Ok(DebitOutcome::Debited(after)) = tx.debit(r.user_id, r.price) else { panic!("debit") };
    let payment = Payment {
        id: PaymentId::random(),
        reservation_id: r.id,
        user_id: r.user_id,
        amount: r.price,
        balance_after: after,
        paid_at: fx.now(),
    };
    let entry = LedgerEntry {
        id: LedgerEntryId::random(),
        user_id: r.user_id,
        kind: LedgerKind::Payment,
        amount: Won::new(-r.price.get()),
        balance_after: after,
        at: fx.now(),
        payment_id: Some(payment.id),
        reservation_id: Some(r.id),
    };
    (payment, entry)
}

#[test]
fn writes_in_another_order_are_sent_one_by_one_and_commit_together() {
    let fx = Fx::seeded();
    let who = fx.active_user();
    fx.charge(who.user_id(), 5_000_000);
    let r = fx.hold(&who, 0, 3);
    let paid = fx
        .harness
        .store
        .run(&mut |tx| {
            let locked = tx.lock_reservation(r.id)?.expect("reservation");
            let (payment, entry) = debit_and_build(tx, &locked, &fx);
            tx.expire_tokens_of(who.user_id(), fx.now())?;
            tx.mark_paid(r.id, fx.now())?;
            tx.record_payment(&payment)?;
            tx.append_ledger(&entry)?;
            Ok(payment)
        })
        .unwrap();
    assert_eq!(fx.stored(r.id).status, ReservationStatus::Paid);
    assert_eq!(fx.app.balance(who.user_id()).unwrap(), paid.balance_after);
    assert_eq!(fx.app.ledger(who.user_id()).unwrap().len(), 2);
    assert_eq!(fx.app.read_token(who.token().value.as_str()).unwrap().status, TokenStatus::Expired);
    assert_consistent(&fx.harness.store);
}

#[test]
fn a_queued_write_that_fails_rolls_the_whole_payment_back() {
    let fx = Fx::seeded();
    let who = fx.active_user();
    fx.charge(who.user_id(), 5_000_000);
    let r = fx.hold(&who, 0, 4);
    fx.app.pay(&who, r.id).unwrap();
    let who_again = fx.active_user();
    fx.charge(who_again.user_id(), 5_000_000);
    // Marking a PAID reservation paid again is a bug the store must refuse; the refusal only
    // comes when the queued writes are sent, and must undo the debit made before.
    let mut r_paid = fx.stored(r.id);
    r_paid.user_id = who_again.user_id();
    let outcome = fx.harness.store.run(&mut |tx| {
        let (payment, entry) = debit_and_build(tx, &r_paid, &fx);
        tx.mark_paid(r.id, fx.now())?;
        tx.record_payment(&payment)?;
        tx.append_ledger(&entry)?;
        tx.expire_tokens_of(who_again.user_id(), fx.now())?;
        Ok(payment)
    });
    assert!(matches!(outcome, Err(PayError::Store(StoreError::Internal(_)))), "{outcome:?}");
    assert_eq!(fx.app.balance(who_again.user_id()).unwrap(), Won::new(5_000_000));
    assert_eq!(fx.app.ledger(who_again.user_id()).unwrap().len(), 1);
    assert_eq!(fx.app.read_token(who_again.token().value.as_str()).unwrap().status, TokenStatus::Active);
    assert_consistent(&fx.harness.store);
}
