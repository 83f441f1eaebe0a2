//! The payment unit of work, shaped read, decide, apply, in one transaction:
//!
//! 1. with a guard, claim the `Idempotency-Key` (first, so a concurrent duplicate waits on the
//!    key and is answered `InFlight` or its replay, never a lock timeout elsewhere);
//! 2. take the lock on payments with this token (`locks`), in a statement of its own, so the
//!    next read sees every payment with the token committed before: "has this token paid" is
//!    authoritative;
//! 3. read and lock the facts in one statement: the reservation `FOR UPDATE`, then the payer's
//!    balance `FOR UPDATE` (0 without an account), whether a payment with the token exists, and
//!    the token `FOR UPDATE` if it is in `queue_tokens` (`None` when the queue lives in another
//!    store), its state derived from its admission's range as every read derives it (`queue`).
//!    Locks are always taken in one order (token, reservation, account, token row), so
//!    payments never deadlock one another or a charge;
//! 4. call the domain's `decide` once; a refusal rolls back;
//! 5. write the settlement as one statement: the reservation PAID, the debit (guarded: it must
//!    still cover the price), the payment with its token (UNIQUE: the second line of "a token
//!    pays once"), the ledger entry, that token EXPIRED with `expires_at = paid_at` (stored
//!    ACTIVE, or stored WAITING and read ACTIVE off its range) when it is in `queue_tokens`
//!    (exactly when the facts read it: `Settlement::uses_up_token`; never any other token of
//!    the user), and with a guard the record;
//! 6. COMMIT, unless the call budget has run out (then roll back: `Timeout`).

use std::time::Instant;

use diesel::prelude::*;
use diesel::sql_types::{BigInt, Bool, Int4, Nullable, Text, Timestamptz, Uuid as SqlUuid};
use domain::error::PayError;
use domain::idempotency::{Claimed, Effect, IdempotencyGuard};
use domain::ids::UserId;
use domain::money::Won;
use domain::payment::{PaymentFacts, PaymentRequest, Settlement};
use domain::ports::{Decide, PaymentStore, StoreError};
use domain::queue::{ExpiredReason, QueueToken, TokenStatus, TokenValue};
use time::OffsetDateTime;
use uuid::Uuid;

use crate::error::{corrupt, Fail};
use crate::idempotency;
use crate::locks;
use crate::queue;
use crate::reservations::ReservationRow;
use crate::sql::prepared;
use crate::PgStore;

/// The token lock as a statement of its own (after a claim, when it cannot share the BEGIN's
/// round trip).
pub(crate) const LOCK_TOKEN: &str = "SELECT pg_advisory_xact_lock($1, $2)";

/// The facts, locked in a fixed order: each CTE waits for the previous one (`count(*) >= 0`
/// is always true, but makes the account's lock follow the reservation's, and the token row's
/// follow the account's). The token is read as every read of it reads it: a token stored
/// WAITING that an admission passed reads as its range makes it (`queue::admitted_join`:
/// ACTIVE, or EXPIRED when skipped), derived from the locked row (`tl`: the latest version,
/// which a statement's snapshot may not be) and the cursor and ranges of the statement's
/// snapshot. Its `seq` is the stored one: for an entrant of a drawn room its arrival, not its
/// drawn place (`order`); no payment decision reads it.
pub(crate) const FACTS: &str = concat!(
    "WITH r AS ( \
       SELECT id, user_id, schedule_id, seat_id, seat_number, price, status, created_at, held_until, paid_at \
       FROM reservations WHERE id = $1 FOR UPDATE), \
     a AS (SELECT balance FROM accounts WHERE user_id = $2 AND (SELECT count(*) FROM r) >= 0 FOR UPDATE), \
     tl AS ( \
       SELECT room, seq, token, user_id, status, issued_at, activated_at, expires_at, expired_reason \
       FROM queue_tokens WHERE token = $3 AND (SELECT count(*) FROM a) >= 0 FOR UPDATE), \
     t AS (SELECT ",
    queue::derived_token_columns!("t.seq"),
    " FROM tl t JOIN queue_admission a ON a.room = t.room \
       LEFT JOIN queue_draw_positions d ON d.room = t.room AND d.arrival = t.seq ",
    queue::admitted_join!(queue::line_position!()),
    ") \
     SELECT r.id, r.user_id, r.schedule_id, r.seat_id, r.seat_number, r.price, r.status, r.created_at, \
       r.held_until, r.paid_at, \
       COALESCE((SELECT balance FROM a), 0) AS balance, \
       EXISTS (SELECT 1 FROM payments p WHERE p.token = $3) AS token_paid, \
       t.seq AS t_seq, t.token AS t_token, t.user_id AS t_user_id, t.status AS t_status, \
       t.issued_at AS t_issued_at, t.activated_at AS t_activated_at, t.expires_at AS t_expires_at, \
       t.expired_reason AS t_expired_reason \
     FROM (SELECT) AS one LEFT JOIN r ON TRUE LEFT JOIN t ON TRUE"
);

/// The settlement, one statement: each step runs only if the one before it did, so a fact that
/// changed anyway (it cannot under the locks) writes nothing and the count says so. The token
/// row is there to use up exactly when the facts read it (`Settlement::uses_up_token`); with the
/// queue in another store there is none. The decision took it ACTIVE, stored or derived from
/// its admission's range (then stored WAITING, and `$16` the `activated_at` it read, which the
/// row keeps); the row is locked since the facts, so it is as they read it.
pub(crate) const SETTLE: &str = "WITH r AS ( \
       UPDATE reservations SET status = 'PAID', paid_at = $2 WHERE id = $1 AND status = 'HELD' RETURNING id), \
     a AS ( \
       UPDATE accounts SET balance = balance - $3 \
       WHERE user_id = $4 AND balance >= $3 AND balance - $3 = $5 AND EXISTS (SELECT 1 FROM r) \
       RETURNING balance), \
     p AS ( \
       INSERT INTO payments (id, reservation_id, user_id, amount, balance_after, paid_at, token) \
       SELECT $6, r.id, $4, $3, $5, $2, $7 FROM r, a RETURNING id), \
     l AS ( \
       INSERT INTO ledger_entries (id, user_id, kind, amount, balance_after, at, payment_id, reservation_id) \
       SELECT $8, $4, 'PAYMENT', $9, $10, $11, p.id, $1 FROM p RETURNING id), \
     t AS ( \
       UPDATE queue_tokens SET status = 'EXPIRED', expires_at = $2, expired_reason = 'PAID', \
         activated_at = COALESCE(activated_at, $16) \
       WHERE token = $7 AND (status = 'ACTIVE' OR (status = 'WAITING' AND $16 IS NOT NULL)) \
         AND EXISTS (SELECT 1 FROM l)), \
     k AS ( \
       UPDATE idempotency_keys SET status = $12, body = $13, ledger_entry_id = l.id FROM l \
       WHERE user_id = $14 AND key = $15 RETURNING 1) \
     SELECT (SELECT count(*) FROM l) AS settled, (SELECT count(*) FROM k) AS recorded";

#[derive(Debug, QueryableByName)]
struct FactsRow {
    #[diesel(embed)]
    reservation: Option<ReservationRow>,
    #[diesel(sql_type = BigInt)]
    balance: i64,
    #[diesel(sql_type = Bool)]
    token_paid: bool,
    #[diesel(sql_type = Nullable<BigInt>)]
    t_seq: Option<i64>,
    #[diesel(sql_type = Nullable<Text>)]
    t_token: Option<String>,
    #[diesel(sql_type = Nullable<SqlUuid>)]
    t_user_id: Option<Uuid>,
    #[diesel(sql_type = Nullable<Text>)]
    t_status: Option<String>,
    #[diesel(sql_type = Nullable<Timestamptz>)]
    t_issued_at: Option<OffsetDateTime>,
    #[diesel(sql_type = Nullable<Timestamptz>)]
    t_activated_at: Option<OffsetDateTime>,
    #[diesel(sql_type = Nullable<Timestamptz>)]
    t_expires_at: Option<OffsetDateTime>,
    #[diesel(sql_type = Nullable<Text>)]
    t_expired_reason: Option<String>,
}

impl FactsRow {
    fn into_domain(self) -> Result<PaymentFacts, StoreError> {
        let token = match (self.t_seq, self.t_token, self.t_user_id, self.t_status, self.t_issued_at) {
            (Some(seq), Some(value), Some(user), Some(status), Some(issued_at)) => Some(QueueToken {
                value: TokenValue::parse(&value).map_err(|_| corrupt("queue_tokens.token"))?,
                user_id: UserId::from_uuid(user),
                seq,
                status: status.parse::<TokenStatus>().map_err(|_| corrupt("queue_tokens.status"))?,
                issued_at,
                activated_at: self.t_activated_at,
                expires_at: self.t_expires_at,
                expired_reason: self
                    .t_expired_reason
                    .map(|r| r.parse::<ExpiredReason>().map_err(|_| corrupt("queue_tokens.expired_reason")))
                    .transpose()?,
            }),
            _ => None,
        };
        Ok(PaymentFacts {
            reservation: self.reservation.map(ReservationRow::into_domain).transpose()?,
            balance: Won::new(self.balance),
            token_paid: self.token_paid,
            token,
        })
    }
}

#[derive(Debug, QueryableByName)]
struct Settled {
    #[diesel(sql_type = BigInt)]
    settled: i64,
    #[diesel(sql_type = BigInt)]
    recorded: i64,
}

/// Why a payment stops before commit.
enum Stopped {
    Refused(PayError),
    /// Boxed: a recorded response is large next to the other outcomes.
    Claim(Box<Claimed<Settlement>>),
}

/// The idempotency record a keyed payment writes with its effect (all `None` unkeyed).
#[derive(Debug, Default)]
struct Record {
    status: Option<i32>,
    body: Option<String>,
    user: Option<Uuid>,
    key: Option<String>,
}

impl Record {
    /// The record of `s` under `guard`. The answer is rendered here, inside the transaction,
    /// because the record must commit with the effect it answers for: a retry with the key
    /// replays these very bytes, and a record written later could be lost while the effect
    /// stays. Unkeyed payments are rendered by the caller after the commit.
    fn of(s: &Settlement, guard: Option<&IdempotencyGuard<'_>>) -> Self {
        guard.map_or_else(Self::default, |g| {
            let response = (g.render)(&Effect::Paid(s.payment.clone()));
            Self {
                status: Some(i32::from(response.status)),
                body: Some(response.body),
                user: Some(g.user.as_uuid()),
                key: Some(g.key.as_str().to_owned()),
            }
        })
    }
}

impl PaymentStore for PgStore {
    fn pay(
        &self,
        req: &PaymentRequest,
        guard: Option<&IdempotencyGuard<'_>>,
        decide: &mut Decide<'_>,
    ) -> Result<Claimed<Settlement>, PayError> {
        let started = Instant::now();
        // Unkeyed, `BEGIN` and the token lock go in one round trip; keyed, the claim comes
        // first (see the module docs), so the lock follows it.
        let begin = match guard {
            None => locks::token_payments_begin(&req.token),
            Some(_) => "BEGIN".to_owned(),
        };
        let outcome = self.transaction(&begin, started, |tx| {
            if let Some(guard) = guard {
                if let Some(stop) = idempotency::claim(tx, guard)? {
                    return Err(Fail::Refuse(Stopped::Claim(Box::new(stop.claimed()))));
                }
                prepared(LOCK_TOKEN)
                    .bind::<Int4, _>(locks::TOKEN_PAYMENTS)
                    .bind::<Int4, _>(locks::token_key(&req.token))
                    .execute(tx.conn()?)?;
            }
            let facts: FactsRow = prepared(FACTS)
                .bind::<SqlUuid, _>(req.reservation.as_uuid())
                .bind::<SqlUuid, _>(req.user.as_uuid())
                .bind::<Text, _>(req.token.as_str())
                .get_result(tx.conn()?)?;
            let facts = facts.into_domain()?;
            let activated_at = facts.token.as_ref().and_then(|t| t.activated_at);
            let settlement = decide(&facts).map_err(|e| Fail::Refuse(Stopped::Refused(e)))?;
            let p = &settlement.payment;
            let e = &settlement.entry;
            let record = Record::of(&settlement, guard);
            let done: Settled = prepared(SETTLE)
                .bind::<SqlUuid, _>(p.reservation_id.as_uuid())
                .bind::<Timestamptz, _>(p.paid_at)
                .bind::<BigInt, _>(p.amount.get())
                .bind::<SqlUuid, _>(p.user_id.as_uuid())
                .bind::<BigInt, _>(p.balance_after.get())
                .bind::<SqlUuid, _>(p.id.as_uuid())
                .bind::<Text, _>(settlement.token.as_str())
                .bind::<SqlUuid, _>(e.id.as_uuid())
                .bind::<BigInt, _>(e.amount.get())
                .bind::<BigInt, _>(e.balance_after.get())
                .bind::<Timestamptz, _>(e.at)
                .bind::<Nullable<Int4>, _>(record.status)
                .bind::<Nullable<Text>, _>(record.body)
                .bind::<Nullable<SqlUuid>, _>(record.user)
                .bind::<Nullable<Text>, _>(record.key)
                .bind::<Nullable<Timestamptz>, _>(activated_at)
                .get_result(tx.conn()?)?;
            if done.settled != 1 || (guard.is_some() && done.recorded != 1) {
                // The settlement does not fit the locked facts: a decision made on other facts
                // than these. Nothing of it may commit.
                return Err(Fail::Store(StoreError::Internal(format!(
                    "the settlement of reservation {} does not apply to the locked facts",
                    p.reservation_id
                ))));
            }
            Ok(settlement)
        });
        match outcome {
            Ok(Ok(settlement)) => Ok(Claimed::Done(settlement)),
            Ok(Err(Stopped::Refused(e))) => Err(e),
            Ok(Err(Stopped::Claim(claimed))) => Ok(*claimed),
            Err(e) => Err(PayError::Store(e)),
        }
    }
}
