//! Balances and their ledger. A balance only changes through one conditional statement that
//! both tests and writes (no read-modify-write), with its ledger entry in the same transaction.

use diesel::prelude::*;
use diesel::sql_types::{BigInt, Nullable, Text, Timestamptz, Uuid as SqlUuid};
use domain::account::{CreditOutcome, LedgerEntry, LedgerKind};
use domain::ids::{LedgerEntryId, PaymentId, ReservationId, UserId};
use domain::money::Won;
use domain::ports::{AccountStore, DebitOutcome, StoreError};
use time::OffsetDateTime;
use uuid::Uuid;

use crate::error::corrupt;
use crate::schema::{accounts, ledger_entries};
use crate::sql::prepared;
use crate::PgStore;

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

#[derive(Debug, Queryable, Selectable)]
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

/// The stored balance, 0 for a user without an account row.
pub(crate) fn current_balance(c: &mut PgConnection, user: Uuid) -> QueryResult<Won> {
    let b: Option<i64> = accounts::table.find(user).select(accounts::balance).get_result(c).optional()?;
    Ok(Won::new(b.unwrap_or(0)))
}

pub(crate) fn insert_ledger(c: &mut PgConnection, e: &LedgerEntry) -> QueryResult<()> {
    prepared(
        "INSERT INTO ledger_entries (id, user_id, kind, amount, balance_after, at, payment_id, reservation_id) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
    )
    .bind::<SqlUuid, _>(e.id.as_uuid())
    .bind::<SqlUuid, _>(e.user_id.as_uuid())
    .bind::<Text, _>(e.kind.as_str())
    .bind::<BigInt, _>(e.amount.get())
    .bind::<BigInt, _>(e.balance_after.get())
    .bind::<Timestamptz, _>(e.at)
    .bind::<Nullable<SqlUuid>, _>(e.payment_id.map(|p| p.as_uuid()))
    .bind::<Nullable<SqlUuid>, _>(e.reservation_id.map(|r| r.as_uuid()))
    .execute(c)
    .map(|_| ())
}

/// Subtracts `amount` if the balance covers it, in one statement: the row lock taken by the
/// UPDATE serialises concurrent debits and charges of one user, and the WHERE is re-checked
/// against the latest balance after waiting.
pub(crate) fn debit(c: &mut PgConnection, user: Uuid, amount: Won) -> QueryResult<DebitOutcome> {
    let after: Option<Balance> =
        prepared("UPDATE accounts SET balance = balance - $2 WHERE user_id = $1 AND balance >= $2 RETURNING balance")
            .bind::<SqlUuid, _>(user)
            .bind::<BigInt, _>(amount.get())
            .get_result(c)
            .optional()?;
    match after {
        Some(b) => Ok(DebitOutcome::Debited(Won::new(b.balance))),
        None => Ok(DebitOutcome::Insufficient(current_balance(c, user)?)),
    }
}

impl AccountStore for PgStore {
    fn balance(&self, user: UserId) -> Result<Won, StoreError> {
        self.with_conn(|c| current_balance(c, user.as_uuid()))
    }

    fn credit(
        &self,
        user: UserId,
        amount: Won,
        limit: Won,
        entry: LedgerEntryId,
        at: OffsetDateTime,
    ) -> Result<CreditOutcome, StoreError> {
        // One autocommit statement: the conditional upsert (which locks the account row, so
        // concurrent charges queue there and re-check the limit against the latest balance)
        // and the ledger entry built from its RETURNING, so the entry exists exactly when the
        // balance changed. The account row is locked before the entry takes its `entry_no`,
        // so ledger order is balance order. `seen` is the balance in the statement's snapshot,
        // only used to explain a refusal (below).
        let row: Credit = self.with_conn(|c| {
            prepared(
                "WITH a AS ( \
                   INSERT INTO accounts AS a (user_id, balance) SELECT $1, $2 WHERE $2 <= $3 \
                   ON CONFLICT (user_id) DO UPDATE SET balance = a.balance + EXCLUDED.balance \
                   WHERE a.balance + EXCLUDED.balance <= $3 \
                   RETURNING a.balance), \
                 l AS ( \
                   INSERT INTO ledger_entries (id, user_id, kind, amount, balance_after, at) \
                   SELECT $4, $1, 'CHARGE', $2, a.balance, $5 FROM a \
                   RETURNING balance_after) \
                 SELECT (SELECT balance_after FROM l) AS credited, \
                   (SELECT balance FROM accounts WHERE user_id = $1) AS seen",
            )
            .bind::<SqlUuid, _>(user.as_uuid())
            .bind::<BigInt, _>(amount.get())
            .bind::<BigInt, _>(limit.get())
            .bind::<SqlUuid, _>(entry.as_uuid())
            .bind::<Timestamptz, _>(at)
            .get_result(c)
        })?;
        if let Some(after) = row.credited {
            return Ok(CreditOutcome::Credited(Won::new(after)));
        }
        // Refused. The upsert decided on the latest committed balance, which may be newer than
        // the snapshot's: the snapshot's balance is reported when it also exceeds the limit
        // (true when nothing committed in between, and a balance the user really had),
        // otherwise the balance is read again, as a separate statement would.
        let seen = Won::new(row.seen.unwrap_or(0));
        if seen.get().saturating_add(amount.get()) > limit.get() {
            return Ok(CreditOutcome::LimitExceeded(seen));
        }
        self.with_conn(|c| current_balance(c, user.as_uuid())).map(CreditOutcome::LimitExceeded)
    }

    fn ledger(&self, user: UserId) -> Result<Vec<LedgerEntry>, StoreError> {
        let rows: Vec<LedgerRow> = self.with_conn(|c| {
            ledger_entries::table
                .filter(ledger_entries::user_id.eq(user.as_uuid()))
                .order(ledger_entries::entry_no)
                .select(LedgerRow::as_select())
                .load(c)
        })?;
        rows.into_iter()
            .map(|r| {
                Ok(LedgerEntry {
                    id: LedgerEntryId::from_uuid(r.id),
                    user_id: UserId::from_uuid(r.user_id),
                    kind: LedgerKind::parse(&r.kind).ok_or_else(|| corrupt("ledger_entries.kind"))?,
                    amount: Won::new(r.amount),
                    balance_after: Won::new(r.balance_after),
                    at: r.at,
                    payment_id: r.payment_id.map(PaymentId::from_uuid),
                    reservation_id: r.reservation_id.map(ReservationId::from_uuid),
                })
            })
            .collect()
    }
}
