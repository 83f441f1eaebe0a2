//! Step 7: payments.

use super::*;

/// Facts of a held reservation of `who` priced 150,000, with `balance`.
fn facts(who: UserId, balance: i64) -> (PaymentFacts, ReservationId) {
    let r = reservation(who, ReservationStatus::Held, t0() + secs(100));
    let id = r.id;
    (PaymentFacts { reservation: Some(r), balance: Won::new(balance), token_paid: false, token: None }, id)
}

#[test]
fn pay_refuses_malformed_unknown_waiting_and_expired_tokens_before_the_store() {
    let who = user();
    let r = ReservationId::from_uuid(id());
    // No payment fake facts: a call to the payment store would fail the test.
    let mut w = World::new();
    w.queue.expect_find().returning(|_| Ok(None));
    let app = w.app();
    assert_eq!(app.pay("nope", r, None), Err(PayError::TokenInvalid));
    assert_eq!(app.pay(value().as_str(), r, None), Err(PayError::TokenInvalid));

    let app = World::new().with_token(waiting(who, 2)).app();
    assert_eq!(app.pay(value().as_str(), r, None), Err(PayError::TokenNotActive));
    let app = World::new().with_token(active(who, t0())).app();
    assert_eq!(app.pay(value().as_str(), r, None), Err(PayError::TokenExpired), "at the exact expiry");
    let used = QueueToken { status: TokenStatus::Expired, ..active(who, t0() + secs(9)) };
    let app = World::new().with_token(used).app();
    assert_eq!(app.pay(value().as_str(), r, None), Err(PayError::TokenExpired));

    let mut w = World::new();
    w.queue.expect_find().returning(|_| Err(down()));
    assert_eq!(w.app().pay(value().as_str(), r, None), Err(PayError::Store(down())));
}

#[test]
fn a_payment_settles_the_facts_the_store_read_and_uses_up_the_token_that_paid() {
    let who = user();
    let (facts, r) = facts(who, 200_000);
    let mut w = World::new().with_token(active(who, t0() + secs(1)));
    w.queue.expect_use_up().with(eq(value()), eq(t0())).times(1).returning(|_, _| Ok(()));
    let w = w.payments(FakePayments { facts: Some(facts), ..FakePayments::default() });
    let payments = w.payments.clone();
    let outcome = w.app().pay(value().as_str(), r, None).unwrap();
    let Outcome::Fresh { value: payment, recorded: None } = outcome else { panic!("a fresh, unkeyed payment") };
    assert_eq!((payment.reservation_id, payment.user_id, payment.amount), (r, who, Won::new(150_000)));
    assert_eq!((payment.balance_after, payment.paid_at), (Won::new(50_000), t0()));
    let seen = lock(&payments.seen).clone();
    assert_eq!(seen, vec![(PaymentRequest { reservation: r, user: who, token: value() }, None)]);
    let decisions = lock(&payments.decisions).clone();
    let settlement = decisions[0].as_ref().unwrap();
    assert_eq!((&settlement.payment, &settlement.token), (&payment, &value()));
    assert_eq!((settlement.entry.kind, settlement.entry.amount), (LedgerKind::Payment, Won::new(-150_000)));
}

#[test]
fn a_payment_store_that_holds_the_token_uses_it_up_itself() {
    let who = user();
    let (mut f, r) = facts(who, 200_000);
    f.token = Some(active(who, t0() + secs(1)));
    // No `use_up` expectation: the payment's own transaction used the token up.
    let w = World::new()
        .with_token(active(who, t0() + secs(1)))
        .payments(FakePayments { facts: Some(f), ..FakePayments::default() });
    let payments = w.payments.clone();
    assert!(matches!(w.app().pay(value().as_str(), r, None), Ok(Outcome::Fresh { .. })));
    assert!(lock(&payments.decisions)[0].as_ref().is_ok_and(|s| s.uses_up_token));
}

/// A change to the facts a store read.
type Change = dyn Fn(&mut PaymentFacts);

#[test]
fn the_decisions_refusals_are_returned_and_nothing_is_used_up() {
    let who = user();
    let refusals: Vec<(Box<Change>, PayError)> = vec![
        (
            Box::new(|f| f.balance = Won::new(149_999)),
            PayError::InsufficientBalance { balance: Won::new(149_999), price: Won::new(150_000) },
        ),
        (Box::new(|f| f.token_paid = true), PayError::TokenExpired),
        (Box::new(|f| f.reservation = None), PayError::NotFound),
        (
            Box::new(|f| f.reservation.iter_mut().for_each(|r| r.status = ReservationStatus::Paid)),
            PayError::AlreadyPaid,
        ),
        (Box::new(|f| f.reservation.iter_mut().for_each(|r| r.held_until = t0())), PayError::HoldExpired),
        (Box::new(|f| f.token = Some(waiting(UserId::from_uuid(id()), 3))), PayError::TokenNotActive),
    ];
    for (change, expected) in refusals {
        let (mut f, r) = facts(who, 1_000_000);
        change(&mut f);
        // No `use_up` expectation: using the token up would fail the test.
        let w = World::new()
            .with_token(active(who, t0() + secs(1)))
            .payments(FakePayments { facts: Some(f), ..FakePayments::default() });
        assert_eq!(w.app().pay(value().as_str(), r, None), Err(expected));
    }
}

#[test]
fn the_token_and_the_hold_are_judged_when_the_store_decides_not_when_authorised() {
    let who = user();
    let clock = ManualClock::new(t0());
    let (f, r) = facts(who, 1_000_000);
    let mut w = World::new().with_token(active(who, t0() + secs(2))).payments(FakePayments {
        facts: Some(f),
        lock_wait: Some((clock.clone(), secs(2))),
        ..FakePayments::default()
    });
    w.clock = Some(Arc::new(clock));
    assert_eq!(w.app().pay(value().as_str(), r, None), Err(PayError::TokenExpired), "the TTL ran out meanwhile");
}

#[test]
fn a_failed_use_up_after_the_commit_still_returns_the_payment() {
    let who = user();
    let (f, r) = facts(who, 200_000);
    let mut w = World::new().with_token(active(who, t0() + secs(1)));
    w.queue.expect_use_up().times(1).returning(|_, _| Err(down()));
    let w = w.payments(FakePayments { facts: Some(f), ..FakePayments::default() });
    let outcome = w.app().pay(value().as_str(), r, None).unwrap();
    assert!(matches!(outcome, Outcome::Fresh { value, .. } if value.reservation_id == r));
}

#[test]
fn a_payment_store_failure_is_a_store_error() {
    let who = user();
    let w = World::new()
        .with_token(active(who, t0() + secs(1)))
        .payments(FakePayments { failure: Some(down()), ..FakePayments::default() });
    assert_eq!(w.app().pay(value().as_str(), ReservationId::from_uuid(id()), None), Err(PayError::Store(down())));
}

#[test]
fn a_keyed_payment_replays_before_the_token_check() {
    let who = user();
    let r = ReservationId::from_uuid(id());
    let recorded = record(Fingerprint::payment(r), "paid before");
    // The token is used up (and WAITING tokens of the user would be refused): the replay is
    // answered anyway, and the payment store is never asked.
    let used = QueueToken { status: TokenStatus::Expired, ..active(who, t0() + secs(9)) };
    let mut w = World::new().with_token(used.clone());
    let answer = recorded.clone();
    w.idempotency
        .expect_find()
        .with(eq(who), eq(key("k")), eq(t0()))
        .returning(move |_, _, _| Ok(Some(answer.clone())));
    assert_eq!(w.app().pay(value().as_str(), r, keyed("k")), Ok(Outcome::Replayed(recorded.response.clone())));

    let mut w = World::new().with_token(waiting(who, 4));
    let answer = recorded.clone();
    w.idempotency.expect_find().returning(move |_, _, _| Ok(Some(answer.clone())));
    assert_eq!(w.app().pay(value().as_str(), r, keyed("k")), Ok(Outcome::Replayed(recorded.response)));

    // The key was used for another reservation, or for a charge: refused, before the token too.
    for fingerprint in [Fingerprint::payment(ReservationId::from_uuid(id())), Fingerprint::charge(who, Won::new(5))] {
        let mut w = World::new().with_token(used.clone());
        w.idempotency.expect_find().returning(move |_, _, _| Ok(Some(record(fingerprint.clone(), "other"))));
        assert_eq!(w.app().pay(value().as_str(), r, keyed("k")), Err(PayError::Key(crate::error::KeyConflict::Reused)));
    }

    let mut w = World::new().with_token(used);
    w.idempotency.expect_find().returning(|_, _, _| Err(down()));
    assert_eq!(w.app().pay(value().as_str(), r, keyed("k")), Err(PayError::Store(down())));
}

#[test]
fn a_keyed_payment_is_guarded_and_recorded_with_its_rendered_response() {
    let who = user();
    let (f, r) = facts(who, 200_000);
    let mut w = World::new().with_token(active(who, t0() + secs(1)));
    w.policy = Policy { idempotency_ttl: secs(3_600), ..Policy::default() };
    w.idempotency.expect_find().returning(|_, _, _| Ok(None));
    w.queue.expect_use_up().returning(|_, _| Ok(()));
    let w = w.payments(FakePayments { facts: Some(f), ..FakePayments::default() });
    let payments = w.payments.clone();
    let Outcome::Fresh { value: payment, recorded } = w.app().pay(value().as_str(), r, keyed("k")).unwrap() else {
        panic!("fresh");
    };
    assert_eq!(recorded, Some(render(&Effect::Paid(payment))));
    let guard = lock(&payments.seen)[0].1.clone().unwrap();
    assert_eq!(
        guard,
        GuardSeen {
            user: who,
            key: key("k"),
            fingerprint: Fingerprint::payment(r),
            now: t0(),
            expires_at: t0() + secs(3_600)
        }
    );
}

#[test]
fn a_keyed_payment_claimed_by_the_store_replays_refuses_or_is_in_flight() {
    let who = user();
    let r = ReservationId::from_uuid(id());
    let same = record(Fingerprint::payment(r), "recorded meanwhile");
    let cases = [
        (Claimed::Recorded(same.clone()), Ok(Outcome::Replayed(same.response.clone()))),
        (
            Claimed::Recorded(record(Fingerprint::charge(who, Won::new(1)), "x")),
            Err(PayError::Key(crate::error::KeyConflict::Reused)),
        ),
        (Claimed::InFlight, Err(PayError::Key(crate::error::KeyConflict::InFlight))),
    ];
    for (claimed, expected) in cases {
        let mut w = World::new().with_token(active(who, t0() + secs(1)));
        w.idempotency.expect_find().returning(|_, _, _| Ok(None));
        let w = w.payments(FakePayments { claimed: Some(claimed), ..FakePayments::default() });
        assert_eq!(w.app().pay(value().as_str(), r, keyed("k")), expected);
    }
}
