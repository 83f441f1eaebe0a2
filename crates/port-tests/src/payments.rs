//! [`domain::ports::PaymentUnitOfWork`] through [`domain::service::Ticketing::pay`]: all of a
//! payment's effects on success, none of them on any error.

use domain::account::LedgerKind;
use domain::catalogue::SeatStatus;
use domain::error::{AuthorizeError, PayError};
use domain::ids::ReservationId;
use domain::money::Won;
use domain::payment::Payment;
use domain::ports::DebitOutcome;
use domain::queue::TokenStatus;
use domain::reservation::ReservationStatus;
use time::Duration;

use crate::fixture::Fixture;
use crate::Harness;

/// A payment debits the price, marks the reservation PAID (the seat SOLD), records a PAYMENT
/// ledger entry and expires the payer's token, all at the payment's instant.
pub fn pay_debits_sells_and_expires_the_token<H: Harness>() {
    let fx = Fixture::<H>::seeded();
    let who = fx.active_user();
    let user = who.user_id();
    fx.charge(user, 1_000_000);
    let r = fx.hold(&who, 0, 1);
    fx.advance(Duration::seconds(10));
    let now = fx.now();

    let payment = fx.app.pay(&who, r.id).unwrap();
    assert_eq!((payment.reservation_id, payment.user_id, payment.amount), (r.id, user, r.price));
    let after = Won::new(1_000_000 - r.price.get());
    assert_eq!((payment.balance_after, payment.paid_at), (after, now));
    assert_eq!(fx.app.balance(user).unwrap(), after);

    let stored = fx.stored(r.id);
    assert_eq!((stored.status, stored.paid_at), (ReservationStatus::Paid, Some(now)));
    let ledger = fx.app.ledger(user).unwrap();
    let entry = ledger.last().unwrap();
    assert_eq!((entry.kind, entry.amount, entry.balance_after), (LedgerKind::Payment, Won::new(-r.price.get()), after));
    assert_eq!((entry.payment_id, entry.reservation_id, entry.at), (Some(payment.id), Some(r.id), now));

    let token = fx.ports.queue.find(&who.token().value).unwrap().unwrap();
    assert_eq!((token.status, token.expires_at), (TokenStatus::Expired, Some(now)));
    assert_eq!(fx.app.authorize(who.token().value.as_str()), Err(AuthorizeError::Expired));
    assert_eq!(fx.app.read_token(who.token().value.as_str()).unwrap().status, TokenStatus::Expired);

    let observer = fx.active_user();
    assert_eq!(fx.seat_status(&observer, 0, 1), SeatStatus::Sold);
    // Long after the hold would have lapsed the seat is still sold and nothing is released.
    fx.advance(Duration::days(1));
    assert_eq!(fx.app.release_holds().unwrap(), 0);
    assert_eq!(fx.seat_status(&observer, 0, 1), SeatStatus::Sold);
    // The user may queue again afterwards.
    assert!(fx.app.issue_token(user).unwrap().created);
}

/// Paying an unknown reservation or another user's is `NotFound` and changes nothing.
pub fn pay_unknown_or_foreign_reservation_changes_nothing<H: Harness>() {
    let fx = Fixture::<H>::seeded();
    let users = fx.active_users(2);
    let (owner, thief) = (&users[0], &users[1]);
    fx.charge(owner.user_id(), 1_000_000);
    fx.charge(thief.user_id(), 1_000_000);
    let r = fx.hold(owner, 0, 5);

    let before = (fx.snapshot(owner, r.id), fx.snapshot(thief, r.id));
    assert_eq!(fx.app.pay(thief, r.id), Err(PayError::NotFound));
    assert_eq!(fx.app.pay(thief, ReservationId::random()), Err(PayError::NotFound));
    assert_eq!(fx.app.pay(owner, ReservationId::random()), Err(PayError::NotFound));
    assert_eq!((fx.snapshot(owner, r.id), fx.snapshot(thief, r.id)), before);
    assert!(fx.app.authorize(thief.token().value.as_str()).is_ok());
}

/// Paying a paid reservation is `AlreadyPaid`; the balance is debited once.
pub fn pay_twice_is_already_paid<H: Harness>() {
    let fx = Fixture::<H>::seeded();
    let who = fx.active_user();
    fx.charge(who.user_id(), 1_000_000);
    let r = fx.hold(&who, 1, 30);
    fx.app.pay(&who, r.id).unwrap();
    let before = fx.snapshot(&who, r.id);
    assert_eq!(fx.app.pay(&who, r.id), Err(PayError::AlreadyPaid));
    fx.advance(Duration::days(1));
    assert_eq!(fx.app.pay(&who, r.id), Err(PayError::AlreadyPaid));
    assert_eq!(fx.snapshot(&who, r.id), before);
    assert_eq!(fx.app.balance(who.user_id()).unwrap().get(), 1_000_000 - r.price.get());
}

/// A hold can be paid one microsecond before it lapses, not at the lapse: `HoldExpired`, with
/// nothing changed.
pub fn pay_at_the_exact_lapse_is_hold_expired<H: Harness>() {
    let fx = Fixture::<H>::seeded();
    let who = fx.active_user();
    fx.charge(who.user_id(), 10_000_000);
    let early = fx.hold(&who, 0, 11);
    let late = fx.hold(&who, 0, 12);
    fx.clock.set(early.held_until - Duration::microseconds(1));
    fx.app.pay(&who, early.id).unwrap();

    fx.clock.set(late.held_until);
    let before = fx.snapshot(&who, late.id);
    assert_eq!(fx.app.pay(&who, late.id), Err(PayError::HoldExpired));
    assert_eq!(fx.snapshot(&who, late.id), before);
    // Also once the release task has run.
    fx.app.release_holds().unwrap();
    assert_eq!(fx.app.pay(&who, late.id), Err(PayError::HoldExpired));
    assert_eq!(fx.stored(late.id).status, ReservationStatus::Expired);
}

/// A balance below the price is `InsufficientBalance` with the unchanged balance; nothing
/// changes, the token stays ACTIVE, and the seat stays held for a later payment.
pub fn pay_with_insufficient_balance_changes_nothing<H: Harness>() {
    let fx = Fixture::<H>::seeded();
    let who = fx.active_user();
    let r = fx.hold(&who, 0, 40);
    let short = r.price.get() - 1;
    fx.charge(who.user_id(), short);
    let before = fx.snapshot(&who, r.id);
    assert_eq!(fx.app.pay(&who, r.id), Err(PayError::InsufficientBalance { balance: Won::new(short), price: r.price }));
    assert_eq!(fx.snapshot(&who, r.id), before);
    assert!(fx.app.authorize(who.token().value.as_str()).is_ok());

    fx.charge(who.user_id(), 1);
    let paid = fx.app.pay(&who, r.id).unwrap();
    assert_eq!(paid.balance_after, Won::ZERO);
}

/// When the work fails after writing, the unit of work undoes every write: balance, ledger,
/// reservation, token.
pub fn failed_work_rolls_back_every_write<H: Harness>() {
    let fx = Fixture::<H>::seeded();
    let who = fx.active_user();
    let user = who.user_id();
    fx.charge(user, 1_000_000);
    let r = fx.hold(&who, 2, 1);
    let before = fx.snapshot(&who, r.id);
    let now = fx.now();

    let result = fx.ports.payments.run(&mut |tx| {
        let locked = tx.lock_reservation(r.id)?.ok_or(PayError::NotFound)?;
        let DebitOutcome::Debited(after) = tx.debit(user, locked.price)? else {
            return Err(PayError::NotFound);
        };
        let payment = Payment {
            id: domain::ids::PaymentId::random(),
            reservation_id: r.id,
            user_id: user,
            amount: locked.price,
            balance_after: after,
            paid_at: now,
        };
        tx.mark_paid(r.id, now)?;
        tx.record_payment(&payment)?;
        tx.append_ledger(&domain::account::LedgerEntry {
            id: domain::ids::LedgerEntryId::random(),
            user_id: user,
            kind: LedgerKind::Payment,
            amount: Won::new(-locked.price.get()),
            balance_after: after,
            at: now,
            payment_id: Some(payment.id),
            reservation_id: Some(r.id),
        })?;
        tx.expire_tokens_of(user, now)?;
        Err(PayError::HoldExpired)
    });
    assert_eq!(result, Err(PayError::HoldExpired));
    assert_eq!(fx.snapshot(&who, r.id), before);

    // The debit of a balance that does not cover the amount changes nothing either.
    let result = fx.ports.payments.run(&mut |tx| match tx.debit(user, Won::new(1_000_001))? {
        DebitOutcome::Insufficient(balance) => Err(PayError::InsufficientBalance { balance, price: Won::new(1) }),
        DebitOutcome::Debited(_) => Err(PayError::AlreadyPaid),
    });
    assert_eq!(result, Err(PayError::InsufficientBalance { balance: Won::new(1_000_000), price: Won::new(1) }));
    assert_eq!(fx.snapshot(&who, r.id), before);

    // And the real payment still goes through afterwards.
    assert!(fx.app.pay(&who, r.id).is_ok());
}
