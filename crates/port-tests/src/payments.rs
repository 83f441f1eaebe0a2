//! [`domain::ports::PaymentStore`], read / decide / apply: the facts it reads, every effect of
//! a settlement on success, none on any refusal, and a token that pays once, decided by the
//! domain (`payment::settle`) and backed by the store.

use domain::account::LedgerKind;
use domain::catalogue::SeatStatus;
use domain::error::{AuthorizeError, PayError};
use domain::idempotency::{Fingerprint, IdempotencyKey};
use domain::ids::{LedgerEntryId, PaymentId, ReservationId};
use domain::money::Won;
use domain::payment::{settle, PaymentFacts, PaymentRequest, SettlementIds};
use domain::queue::TokenStatus;
use domain::reservation::ReservationStatus;
use domain::service::ActiveUser;
use time::Duration;

use crate::fixture::{guard, Fixture, World};
use crate::Harness;

impl World {
    /// The payment request `who` makes for `reservation` with their token.
    #[must_use]
    pub fn payment_request(&self, who: &ActiveUser, reservation: ReservationId) -> PaymentRequest {
        PaymentRequest { reservation, user: who.user_id(), token: who.token().value.clone() }
    }

    /// New ids for a settlement.
    #[must_use]
    pub fn settlement_ids(&self) -> SettlementIds {
        SettlementIds {
            payment: PaymentId::from_uuid(self.ports.random.uuid()),
            entry: LedgerEntryId::from_uuid(self.ports.random.uuid()),
        }
    }
}

/// A payment debits the price, marks the reservation PAID (the seat SOLD), records a PAYMENT
/// ledger entry and uses up the paying token, all at the payment's instant.
pub fn pay_debits_sells_and_uses_up_the_token<H: Harness>() {
    let fx = Fixture::<H>::seeded();
    let who = fx.active_user();
    let user = who.user_id();
    fx.charge(user, 1_000_000);
    let r = fx.hold(&who, 0, 1);
    fx.advance(Duration::seconds(10));
    let now = fx.now();

    let payment = fx.pay(&who, r.id).unwrap();
    assert_eq!((payment.reservation_id, payment.user_id, payment.amount), (r.id, user, r.price));
    let after = Won::new(1_000_000 - r.price.get());
    assert_eq!((payment.balance_after, payment.paid_at), (after, now));
    assert_eq!(fx.app.balance(user).unwrap(), after);

    let stored = fx.stored(r.id);
    assert_eq!((stored.status, stored.paid_at), (ReservationStatus::Paid, Some(now)));
    let ledger = fx.ledger(user);
    let entry = &ledger[0];
    assert_eq!((entry.kind, entry.amount, entry.balance_after), (LedgerKind::Payment, Won::new(-r.price.get()), after));
    assert_eq!((entry.payment_id, entry.reservation_id, entry.at), (Some(payment.id), Some(r.id), now));

    let token = fx.token(who.token());
    assert_eq!((token.status, token.expires_at), (TokenStatus::Expired, Some(now)));
    assert_eq!(fx.app.authorize(who.token().value.as_str()), Err(AuthorizeError::Expired));

    let observer = fx.active_user();
    assert_eq!(fx.seat_status(&observer, 0, 1), SeatStatus::Sold);
    assert_eq!(fx.app.reservation(&fx.readmit(user), r.id).unwrap().status, ReservationStatus::Paid);
    // Long after the hold would have lapsed the seat is still sold and nothing is released.
    fx.advance(Duration::days(1));
    assert_eq!(fx.app.release_holds().unwrap(), 0);
    assert_eq!(fx.stored(r.id).status, ReservationStatus::Paid);
}

/// Paying an unknown reservation or another user's is `NotFound` and changes nothing.
pub fn pay_unknown_or_foreign_reservation_changes_nothing<H: Harness>() {
    let fx = Fixture::<H>::seeded();
    let users = fx.active_users(2);
    let (owner, thief) = (&users[0], &users[1]);
    fx.charge(owner.user_id(), 1_000_000);
    fx.charge(thief.user_id(), 1_000_000);
    let r = fx.hold(owner, 0, 5);
    let unknown = ReservationId::from_uuid(fx.ports.random.uuid());

    let before = (fx.snapshot(owner, r.id), fx.snapshot(thief, r.id));
    assert_eq!(fx.pay(thief, r.id), Err(PayError::NotFound));
    assert_eq!(fx.pay(thief, unknown), Err(PayError::NotFound));
    assert_eq!(fx.pay(owner, unknown), Err(PayError::NotFound));
    assert_eq!((fx.snapshot(owner, r.id), fx.snapshot(thief, r.id)), before);
    assert!(fx.app.authorize(thief.token().value.as_str()).is_ok(), "a refused payment uses no token up");
}

/// Paying a paid reservation is `AlreadyPaid` (with a new token; the paying one is used up);
/// the balance is debited once.
pub fn pay_twice_is_already_paid<H: Harness>() {
    let fx = Fixture::<H>::seeded();
    let who = fx.active_user();
    fx.charge(who.user_id(), 1_000_000);
    let r = fx.hold(&who, 1, 30);
    fx.pay(&who, r.id).unwrap();
    assert_eq!(fx.pay(&who, r.id), Err(PayError::TokenExpired), "the token paid once already");
    let again = fx.readmit(who.user_id());
    let before = fx.snapshot(&again, r.id);
    assert_eq!(fx.pay(&again, r.id), Err(PayError::AlreadyPaid));
    fx.advance(Duration::minutes(9));
    assert_eq!(fx.pay(&again, r.id), Err(PayError::AlreadyPaid));
    assert_eq!(fx.snapshot(&again, r.id), before);
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
    fx.pay(&who, early.id).unwrap();

    let who = fx.readmit(who.user_id());
    fx.clock.set(late.held_until);
    let before = fx.snapshot(&who, late.id);
    assert_eq!(fx.pay(&who, late.id), Err(PayError::HoldExpired));
    assert_eq!(fx.snapshot(&who, late.id), before);
    // Also once the release task has run.
    fx.app.release_holds().unwrap();
    assert_eq!(fx.pay(&who, late.id), Err(PayError::HoldExpired));
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
    assert_eq!(fx.pay(&who, r.id), Err(PayError::InsufficientBalance { balance: Won::new(short), price: r.price }));
    assert_eq!(fx.snapshot(&who, r.id), before);
    assert!(fx.app.authorize(who.token().value.as_str()).is_ok());

    fx.charge(who.user_id(), 1);
    let paid = fx.pay(&who, r.id).unwrap();
    assert_eq!(paid.balance_after, Won::ZERO);
}

/// The store calls `decide` once, with the facts as stored (the reservation, the balance,
/// whether the token paid, and the token itself unless the queue lives elsewhere); when
/// `decide` refuses, nothing changes and no key is recorded.
pub fn decide_reads_the_facts_and_its_refusal_changes_nothing<H: Harness>() {
    let fx = Fixture::<H>::seeded();
    let who = fx.active_user();
    fx.charge(who.user_id(), 1_000_000);
    let r = fx.hold(&who, 0, 9);
    let before = fx.snapshot(&who, r.id);
    let key = IdempotencyKey::parse("refused-by-decide").unwrap();
    let fingerprint = Fingerprint::payment(r.id);
    let guard = guard(who.user_id(), &key, &fingerprint, fx.now(), Duration::hours(1));

    let mut seen: Vec<PaymentFacts> = Vec::new();
    let request = fx.payment_request(&who, r.id);
    let result = fx.ports.payments.pay(&request, Some(&guard), &mut |facts| {
        seen.push(facts.clone());
        Err(PayError::HoldExpired)
    });
    assert_eq!(result, Err(PayError::HoldExpired));
    assert_eq!(seen.len(), 1, "decide is called once");
    let facts = &seen[0];
    assert_eq!(facts.reservation, Some(fx.stored(r.id)));
    assert_eq!((facts.balance, facts.token_paid), (Won::new(1_000_000), false));
    if let Some(t) = &facts.token {
        assert_eq!(*t, fx.token(who.token()), "the store's copy of the paying token");
    }
    assert_eq!(fx.snapshot(&who, r.id), before);
    assert_eq!(fx.ports.idempotency.find(who.user_id(), &key, fx.now()).unwrap(), None);

    // An unknown reservation reads as none; a user never charged has 0.
    let stranger = fx.active_user();
    let unknown = fx.payment_request(&stranger, ReservationId::from_uuid(fx.ports.random.uuid()));
    let mut seen = Vec::new();
    let _ = fx.ports.payments.pay(&unknown, None, &mut |facts| {
        seen.push(facts.clone());
        Err(PayError::NotFound)
    });
    assert_eq!(seen.len(), 1);
    assert_eq!((seen[0].reservation.as_ref(), seen[0].balance), (None, Won::ZERO));

    // And the real payment goes through afterwards.
    assert!(fx.pay(&who, r.id).is_ok());
}

/// A token pays once: after a payment the same token cannot pay another reservation
/// (`TokenExpired`, nothing changed), and the store says the token paid; a new token can.
pub fn a_token_pays_once<H: Harness>() {
    let fx = Fixture::<H>::seeded();
    let who = fx.active_user();
    fx.charge(who.user_id(), 10_000_000);
    let r1 = fx.hold(&who, 0, 1);
    let r2 = fx.hold(&who, 0, 2);
    fx.pay(&who, r1.id).unwrap();
    let before = fx.snapshot(&who, r2.id);
    assert_eq!(fx.pay(&who, r2.id), Err(PayError::TokenExpired));
    assert_eq!(fx.snapshot(&who, r2.id), before);

    // At the store: the token is known to have paid, and the domain's rule refuses it.
    let request = fx.payment_request(&who, r2.id);
    let now = fx.now();
    let mut paid_flag = None;
    let result = fx.ports.payments.pay(&request, None, &mut |facts| {
        paid_flag = Some(facts.token_paid);
        settle(facts, &request, who.token(), now, fx.settlement_ids())
    });
    assert_eq!((result, paid_flag), (Err(PayError::TokenExpired), Some(true)));
    assert_eq!(fx.snapshot(&who, r2.id), before);

    let fresh = fx.readmit(who.user_id());
    let mut paid_flag = None;
    let _ = fx.ports.payments.pay(&fx.payment_request(&fresh, r2.id), None, &mut |facts| {
        paid_flag = Some(facts.token_paid);
        Err(PayError::NotFound)
    });
    assert_eq!(paid_flag, Some(false));
    let p = fx.pay(&fresh, r2.id).unwrap();
    assert_eq!(p.balance_after.get(), 10_000_000 - r1.price.get() - r2.price.get());
}

/// The store backs the rules up on its own: a settlement for a token that already paid, or for
/// a reservation already paid, is refused with a store error and changes nothing, even when
/// `decide` ignores the facts.
pub fn the_store_refuses_a_second_payment_with_one_token_whatever_decide_says<H: Harness>() {
    let fx = Fixture::<H>::seeded();
    let who = fx.active_user();
    fx.charge(who.user_id(), 10_000_000);
    let r1 = fx.hold(&who, 0, 1);
    let r2 = fx.hold(&who, 0, 2);
    fx.pay(&who, r1.id).unwrap();
    let now = fx.now();

    // The used-up token, presented as still ACTIVE, for an unpaid reservation.
    let before = fx.snapshot(&who, r2.id);
    let request = fx.payment_request(&who, r2.id);
    let blind = |facts: &PaymentFacts, request: &PaymentRequest, ids| {
        let forged = PaymentFacts {
            token_paid: false,
            token: None,
            reservation: facts.reservation.clone().map(|mut r| {
                r.status = ReservationStatus::Held;
                r
            }),
            ..facts.clone()
        };
        settle(&forged, request, who.token(), now, ids)
    };
    let result = fx.ports.payments.pay(&request, None, &mut |facts| blind(facts, &request, fx.settlement_ids()));
    assert!(matches!(result, Err(PayError::Store(_))), "{result:?}");
    assert_eq!(fx.snapshot(&who, r2.id), before);

    // A fresh token, for the reservation already paid, presented as HELD.
    let fresh = fx.readmit(who.user_id());
    let before = fx.snapshot(&fresh, r1.id);
    let request = fx.payment_request(&fresh, r1.id);
    let result = fx.ports.payments.pay(&request, None, &mut |facts| {
        let forged = PaymentFacts {
            reservation: facts.reservation.clone().map(|mut r| {
                r.status = ReservationStatus::Held;
                r.held_until = now + Duration::days(1);
                r
            }),
            ..facts.clone()
        };
        settle(&forged, &request, fresh.token(), now, fx.settlement_ids())
    });
    assert!(matches!(result, Err(PayError::Store(_))), "{result:?}");
    assert_eq!(fx.snapshot(&fresh, r1.id), before);
    assert_eq!(fx.token(fresh.token()).status, TokenStatus::Active, "the refused payment used nothing up");
    assert_eq!(fx.ledger(who.user_id()).iter().filter(|e| e.kind == LedgerKind::Payment).count(), 1);
}
