//! Balances and their ledger. A balance only changes through one conditional statement that
//! both tests and writes (no read-modify-write), with its ledger entry in the same statement.

use std::time::Instant;

use diesel::prelude::*;
use diesel::sql_types::{BigInt, Bool, Nullable, Timestamptz, Uuid as SqlUuid};
use domain::account::{CreditOutcome, CreditRequest, LedgerEntry, LedgerKind, LedgerQuery};
use domain::idempotency::{Claimed, Effect, IdempotencyGuard};
use domain::ids::{LedgerEntryId, PaymentId, ReservationId, UserId};
use domain::money::Won;
use domain::ports::{AccountStore, StoreError};
use time::OffsetDateTime;
use uuid::Uuid;

use crate::error::{corrupt, Fail};
use crate::idempotency;
use crate::schema::ledger_entries;
use crate::sql::prepared;
use crate::PgStore;

pub(crate) const BALANCE: &str = "SELECT balance FROM accounts WHERE user_id = $1";

/// The conditional upsert (which locks the account row, so concurrent charges queue there and
/// re-check the limit against the latest balance) and the ledger entry built from its
/// RETURNING, so the entry exists exactly when the balance changed. The limit test restates
/// `credit_fits` (`balance + amount <= limit`). The account row is locked before the entry
/// takes its `entry_no`, so ledger order is balance order. `seen` is the balance in the
/// statement's snapshot, only used to explain a refusal.
pub(crate) const CREDIT: &str = "WITH a AS ( \
       INSERT INTO accounts AS a (user_id, balance) SELECT $1, $2 WHERE $2 <= $3 \
       ON CONFLICT (user_id) DO UPDATE SET balance = a.balance + EXCLUDED.balance \
       WHERE a.balance + EXCLUDED.balance <= $3 \
       RETURNING a.balance), \
     l AS ( \
       INSERT INTO ledger_entries (id, user_id, kind, amount, balance_after, at) \
       SELECT $4, $1, 'CHARGE', $2, a.balance, $5 FROM a \
       RETURNING balance_after) \
     SELECT (SELECT balance_after FROM l) AS credited, \
       (SELECT balance FROM accounts WHERE user_id = $1) AS seen";

/// The newest `$2` entries of the user.
pub(crate) const LEDGER_LATEST: &str =
    "SELECT TRUE AS found, id, user_id, kind, amount, balance_after, at, payment_id, reservation_id \
     FROM ledger_entries WHERE user_id = $1 ORDER BY entry_no DESC LIMIT $2";

/// The newest `$3` entries of the user older than their entry `$2`: one row with `found`
/// false (and no entry) when `$2` is not an entry of theirs.
pub(crate) const LEDGER_BEFORE: &str = "SELECT b.entry_no IS NOT NULL AS found, \
       e.id, e.user_id, e.kind, e.amount, e.balance_after, e.at, e.payment_id, e.reservation_id \
     FROM (SELECT) AS one \
     LEFT JOIN ledger_entries b ON b.id = $2 AND b.user_id = $1 \
     LEFT JOIN LATERAL ( \
       SELECT l.entry_no, l.id, l.user_id, l.kind, l.amount, l.balance_after, l.at, l.payment_id, l.reservation_id \
       FROM ledger_entries l WHERE l.user_id = $1 AND l.entry_no < b.entry_no \
       ORDER BY l.entry_no DESC LIMIT $3) e ON TRUE \
     ORDER BY e.entry_no DESC";

/// The outcome of the charge statement.
#[derive(Debug, QueryableByName)]
struct Credit {
    /// The new balance, if credited.
    #[diesel(sql_type = Nullable<BigInt>)]
    credited: Option<i64>,
    /// The balance in the statement's snapshot (NULL: no account).
    #[diesel(sql_type = Nullable<BigInt>)]
    seen: Option<i64>,
}

#[derive(Debug, QueryableByName)]
struct Balance {
    #[diesel(sql_type = BigInt)]
    balance: i64,
}

#[derive(Debug, QueryableByName)]
#[diesel(table_name = ledger_entries, check_for_backend(diesel::pg::Pg))]
struct LedgerRow {
    id: Uuid,
    user_id: Uuid,
    kind: String,
    amount: i64,
    balance_after: i64,
    at: OffsetDateTime,
    payment_id: Option<Uuid>,
    reservation_id: Option<Uuid>,
}

#[derive(Debug, QueryableByName)]
struct LedgerPageRow {
    #[diesel(sql_type = Bool)]
    found: bool,
    #[diesel(embed)]
    entry: Option<LedgerRow>,
}

impl LedgerRow {
    fn into_domain(self) -> Result<LedgerEntry, StoreError> {
        Ok(LedgerEntry {
            id: LedgerEntryId::from_uuid(self.id),
            user_id: UserId::from_uuid(self.user_id),
            kind: self.kind.parse::<LedgerKind>().map_err(|_| corrupt("ledger_entries.kind"))?,
            amount: Won::new(self.amount),
            balance_after: Won::new(self.balance_after),
            at: self.at,
            payment_id: self.payment_id.map(PaymentId::from_uuid),
            reservation_id: self.reservation_id.map(ReservationId::from_uuid),
        })
    }
}

fn current_balance(c: &mut PgConnection, user: Uuid) -> QueryResult<Won> {
    let b: Option<Balance> = prepared(BALANCE).bind::<SqlUuid, _>(user).get_result(c).optional()?;
    Ok(Won::new(b.map_or(0, |b| b.balance)))
}

/// Runs the credit statement; explains a refusal with the balance that refused it.
fn credit_once(c: &mut PgConnection, req: &CreditRequest) -> QueryResult<CreditOutcome> {
    let row: Credit = prepared(CREDIT)
        .bind::<SqlUuid, _>(req.user.as_uuid())
        .bind::<BigInt, _>(req.amount.get())
        .bind::<BigInt, _>(req.limit.get())
        .bind::<SqlUuid, _>(req.entry.as_uuid())
        .bind::<Timestamptz, _>(req.at)
        .get_result(c)?;
    if let Some(after) = row.credited {
        return Ok(CreditOutcome::Credited(Won::new(after)));
    }
    // Refused. The upsert decided on the latest committed balance, which may be newer than the
    // snapshot's: the snapshot's balance is reported when it also exceeds the limit (true when
    // nothing committed in between, and a balance the user really had), otherwise the balance
    // is read again, as a separate statement would.
    let seen = Won::new(row.seen.unwrap_or(0));
    if !domain::money::credit_fits(seen, req.amount, req.limit) {
        return Ok(CreditOutcome::LimitExceeded(seen));
    }
    current_balance(c, req.user.as_uuid()).map(CreditOutcome::LimitExceeded)
}

impl AccountStore for PgStore {
    fn balance(&self, user: UserId) -> Result<Won, StoreError> {
        self.autocommit(|c| current_balance(c, user.as_uuid()))
    }

    fn credit(
        &self,
        req: &CreditRequest,
        guard: Option<&IdempotencyGuard<'_>>,
    ) -> Result<Claimed<CreditOutcome>, StoreError> {
        let Some(guard) = guard else {
            // Unkeyed: one autocommit statement, sent only while the caller waits (see
            // `PgStore::write_alone`).
            return self.write_alone(|c| credit_once(c, req)).map(Claimed::Done);
        };
        // Keyed: claim, credit, record, in one short transaction (a refusal rolls the claim
        // back, so nothing is recorded).
        let started = Instant::now();
        let outcome = self.transaction("BEGIN", started, |tx| {
            if let Some(stop) = idempotency::claim(tx, guard)? {
                return Err(Fail::Refuse(stop.claimed()));
            }
            match credit_once(tx.conn()?, req)? {
                CreditOutcome::Credited(balance) => {
                    let response = (guard.render)(&Effect::Charged { user: req.user, balance });
                    idempotency::record(tx, guard, &response, req.entry.as_uuid())?;
                    Ok(Claimed::Done(CreditOutcome::Credited(balance)))
                }
                refused @ CreditOutcome::LimitExceeded(_) => Err(Fail::Refuse(Claimed::Done(refused))),
            }
        })?;
        Ok(outcome.unwrap_or_else(|stopped| stopped))
    }

    fn ledger(&self, user: UserId, query: &LedgerQuery) -> Result<Option<Vec<LedgerEntry>>, StoreError> {
        let limit = i64::from(query.limit);
        let rows: Vec<LedgerPageRow> = self.autocommit(|c| match query.before {
            None => prepared(LEDGER_LATEST).bind::<SqlUuid, _>(user.as_uuid()).bind::<BigInt, _>(limit).load(c),
            Some(before) => prepared(LEDGER_BEFORE)
                .bind::<SqlUuid, _>(user.as_uuid())
                .bind::<SqlUuid, _>(before.as_uuid())
                .bind::<BigInt, _>(limit)
                .load(c),
        })?;
        if query.before.is_some() && !rows.first().is_some_and(|r| r.found) {
            return Ok(None);
        }
        rows.into_iter().filter_map(|r| r.entry).map(LedgerRow::into_domain).collect::<Result<_, _>>().map(Some)
    }
}
