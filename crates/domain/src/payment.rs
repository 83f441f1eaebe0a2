//! Payments, shaped read, decide, apply: a payment store reads and locks what the rule needs
//! ([`PaymentFacts`]), [`settle`] decides, and the store writes the decision
//! ([`Settlement`]) in the same transaction. Neither side depends on the order of the other's
//! calls, and "the balance covers the price" and "a token pays once" are decided here only.

use time::OffsetDateTime;

use crate::account::{LedgerEntry, LedgerKind};
use crate::error::PayError;
use crate::ids::{LedgerEntryId, PaymentId, ReservationId, UserId};
use crate::money::Won;
use crate::queue::{QueueToken, TokenStatus, TokenValue};
use crate::reservation::{Reservation, ReservationStatus};

/// A completed payment of a reservation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Payment {
    /// Its id.
    pub id: PaymentId,
    /// What was paid.
    pub reservation_id: ReservationId,
    /// Who paid.
    pub user_id: UserId,
    /// How much (the reservation's price).
    pub amount: Won,
    /// The payer's balance right after.
    pub balance_after: Won,
    /// When.
    pub paid_at: OffsetDateTime,
}

/// What a payment store must read and lock.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PaymentRequest {
    /// The reservation to pay.
    pub reservation: ReservationId,
    /// The payer (the token's user).
    pub user: UserId,
    /// The token that pays.
    pub token: TokenValue,
}

/// What the rule needs, read under the locks that keep it true until commit.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PaymentFacts {
    /// The reservation, locked against other payments and hold release; `None` if unknown.
    pub reservation: Option<Reservation>,
    /// The payer's balance, locked against other debits and credits (0 without an account).
    pub balance: Won,
    /// Whether a payment has already been made with this token (read under a lock that
    /// serialises payments with one token).
    pub token_paid: bool,
    /// The token as this store holds it, locked; `None` when the queue lives in another store
    /// (Redis), where the caller's own read of the token stands in.
    pub token: Option<QueueToken>,
}

/// The decision to write, all in one transaction: the reservation PAID at `payment.paid_at`,
/// the balance debited by `payment.amount`, the payment (recording `token`) and the ledger
/// entry stored, and `token` used up when `uses_up_token`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Settlement {
    pub payment: Payment,
    /// Its ledger entry.
    pub entry: LedgerEntry,
    /// The token that paid; at most one payment per token.
    pub token: TokenValue,
    /// Whether the payment store uses `token` up in the same transaction: exactly when it holds
    /// the queue (it read the token into [`PaymentFacts::token`]). When `false` the caller uses
    /// it up through the queue's own store after the commit.
    pub uses_up_token: bool,
}

/// New ids for a settlement.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SettlementIds {
    /// For the payment.
    pub payment: PaymentId,
    /// For its ledger entry.
    pub entry: LedgerEntryId,
}

/// The payment rule. `presented` is the token as the caller read it (authorization); the
/// store's locked copy, when it has one, wins. `now` is read after the locks were taken, so
/// the token's TTL and the hold are judged as late as possible before commit.
///
/// # Errors
/// `NotFound` (unknown or another user's reservation), `AlreadyPaid`, `HoldExpired`,
/// `TokenExpired` (TTL reached, or the token already paid), `TokenNotActive`,
/// `InsufficientBalance`.
pub fn settle(
    facts: &PaymentFacts,
    request: &PaymentRequest,
    presented: &QueueToken,
    now: OffsetDateTime,
    ids: SettlementIds,
) -> Result<Settlement, PayError> {
    let r = facts.reservation.as_ref().filter(|r| r.user_id == request.user).ok_or(PayError::NotFound)?;
    match r.status_at(now) {
        ReservationStatus::Paid => return Err(PayError::AlreadyPaid),
        ReservationStatus::Expired => return Err(PayError::HoldExpired),
        ReservationStatus::Held => {}
    }
    let token = facts.token.as_ref().unwrap_or(presented);
    if facts.token_paid {
        return Err(PayError::TokenExpired);
    }
    match token.status_at(now) {
        TokenStatus::Active => {}
        TokenStatus::Expired => return Err(PayError::TokenExpired),
        TokenStatus::Waiting => return Err(PayError::TokenNotActive),
    }
    let balance_after = facts
        .balance
        .checked_sub(r.price)
        .filter(|after| after.get() >= 0)
        .ok_or(PayError::InsufficientBalance { balance: facts.balance, price: r.price })?;
    let payment = Payment {
        id: ids.payment,
        reservation_id: r.id,
        user_id: request.user,
        amount: r.price,
        balance_after,
        paid_at: now,
    };
    let entry = LedgerEntry {
        id: ids.entry,
        user_id: request.user,
        kind: LedgerKind::Payment,
        amount: Won::new(-r.price.get()),
        balance_after,
        at: now,
        payment_id: Some(payment.id),
        reservation_id: Some(r.id),
    };
    Ok(Settlement { payment, entry, token: request.token.clone(), uses_up_token: facts.token.is_some() })
}

#[cfg(test)]
mod tests {
    use time::Duration;

    use super::*;
    use crate::ids::{ScheduleId, SeatId};
    use crate::random::{Randomness as _, SeededRandom};

    struct World {
        random: SeededRandom,
        now: OffsetDateTime,
        user: UserId,
    }

    impl World {
        fn new() -> Self {
            let random = SeededRandom::default();
            let user = UserId::from_uuid(random.uuid());
            Self { random, now: OffsetDateTime::from_unix_timestamp(1_893_456_000).unwrap(), user }
        }

        fn reservation(&self, status: ReservationStatus, held_until: OffsetDateTime) -> Reservation {
            Reservation {
                id: ReservationId::from_uuid(self.random.uuid()),
                user_id: self.user,
                schedule_id: ScheduleId::from_uuid(self.random.uuid()),
                seat_id: SeatId::from_uuid(self.random.uuid()),
                seat_number: 7,
                price: Won::new(150_000),
                status,
                created_at: held_until - Duration::seconds(300),
                held_until,
                paid_at: None,
            }
        }

        fn token(&self, status: TokenStatus, expires_at: OffsetDateTime) -> QueueToken {
            QueueToken {
                status,
                activated_at: Some(expires_at - Duration::seconds(600)),
                expires_at: Some(expires_at),
                ..QueueToken::new_waiting(self.random.token(), self.user, 1, self.now - Duration::seconds(700))
            }
        }

        fn ids(&self) -> SettlementIds {
            SettlementIds {
                payment: PaymentId::from_uuid(self.random.uuid()),
                entry: LedgerEntryId::from_uuid(self.random.uuid()),
            }
        }

        /// A held reservation, an active token, a balance of `balance`.
        fn facts(&self, balance: i64) -> (PaymentFacts, PaymentRequest, QueueToken) {
            let r = self.reservation(ReservationStatus::Held, self.now + Duration::seconds(1));
            let token = self.token(TokenStatus::Active, self.now + Duration::seconds(1));
            let request = PaymentRequest { reservation: r.id, user: self.user, token: token.value.clone() };
            let facts =
                PaymentFacts { reservation: Some(r), balance: Won::new(balance), token_paid: false, token: None };
            (facts, request, token)
        }

        fn settle(
            &self,
            facts: &PaymentFacts,
            request: &PaymentRequest,
            token: &QueueToken,
        ) -> Result<Settlement, PayError> {
            settle(facts, request, token, self.now, self.ids())
        }
    }

    #[test]
    fn a_covered_payment_debits_the_price_and_records_its_token() {
        let w = World::new();
        let (facts, request, token) = w.facts(200_000);
        let s = w.settle(&facts, &request, &token).unwrap();
        assert_eq!(s.payment.amount, Won::new(150_000));
        assert_eq!(s.payment.balance_after, Won::new(50_000));
        assert_eq!(s.payment.paid_at, w.now);
        assert_eq!(s.entry.amount, Won::new(-150_000));
        assert_eq!((s.entry.kind, s.entry.payment_id), (LedgerKind::Payment, Some(s.payment.id)));
        assert_eq!(s.token, token.value);
    }

    #[test]
    fn the_balance_must_cover_the_whole_price() {
        let w = World::new();
        let (facts, request, token) = w.facts(150_000);
        assert_eq!(w.settle(&facts, &request, &token).unwrap().payment.balance_after, Won::ZERO);
        let (facts, request, token) = w.facts(149_999);
        assert_eq!(
            w.settle(&facts, &request, &token),
            Err(PayError::InsufficientBalance { balance: Won::new(149_999), price: Won::new(150_000) })
        );
    }

    #[test]
    fn a_token_pays_once() {
        let w = World::new();
        let (mut facts, request, token) = w.facts(1_000_000);
        facts.token_paid = true;
        assert_eq!(w.settle(&facts, &request, &token), Err(PayError::TokenExpired));
    }

    #[test]
    fn the_token_must_be_active_at_the_decision_and_the_stores_copy_wins() {
        let w = World::new();
        let (mut facts, request, token) = w.facts(1_000_000);
        let lapsed = w.token(TokenStatus::Active, w.now);
        assert_eq!(w.settle(&facts, &request, &lapsed), Err(PayError::TokenExpired), "TTL reached at now");
        facts.token = Some(w.token(TokenStatus::Expired, w.now + Duration::seconds(5)));
        assert_eq!(w.settle(&facts, &request, &token), Err(PayError::TokenExpired), "used up in the store");
        facts.token = Some(QueueToken::new_waiting(token.value.clone(), w.user, 9, w.now));
        assert_eq!(w.settle(&facts, &request, &token), Err(PayError::TokenNotActive));
    }

    #[test]
    fn only_the_owner_of_a_live_hold_can_pay() {
        let w = World::new();
        let (mut facts, request, token) = w.facts(1_000_000);
        let other = PaymentRequest { user: UserId::from_uuid(w.random.uuid()), ..request.clone() };
        assert_eq!(w.settle(&facts, &other, &token), Err(PayError::NotFound));
        facts.reservation = None;
        assert_eq!(w.settle(&facts, &request, &token), Err(PayError::NotFound));
        facts.reservation = Some(w.reservation(ReservationStatus::Held, w.now));
        assert_eq!(w.settle(&facts, &request, &token), Err(PayError::HoldExpired), "lapses at the exact instant");
        facts.reservation = Some(w.reservation(ReservationStatus::Paid, w.now + Duration::seconds(9)));
        assert_eq!(w.settle(&facts, &request, &token), Err(PayError::AlreadyPaid));
        facts.reservation = Some(w.reservation(ReservationStatus::Expired, w.now + Duration::seconds(9)));
        assert_eq!(w.settle(&facts, &request, &token), Err(PayError::HoldExpired));
    }

    #[test]
    fn the_store_uses_the_token_up_exactly_when_it_read_it() {
        let w = World::new();
        let (mut facts, request, token) = w.facts(1_000_000);
        assert!(!w.settle(&facts, &request, &token).unwrap().uses_up_token, "the queue lives elsewhere");
        facts.token = Some(token.clone());
        assert!(w.settle(&facts, &request, &token).unwrap().uses_up_token, "the store holds the token");
    }

    #[test]
    fn a_paid_reservation_is_already_paid_even_when_the_token_is_used_up() {
        // Concurrent payments of one reservation with one token: the losers see ALREADY_PAID.
        let w = World::new();
        let (mut facts, request, token) = w.facts(1_000_000);
        facts.token_paid = true;
        facts.reservation = Some(w.reservation(ReservationStatus::Paid, w.now + Duration::seconds(9)));
        assert_eq!(w.settle(&facts, &request, &token), Err(PayError::AlreadyPaid));
    }
}
