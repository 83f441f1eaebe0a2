//! The payment unit of work: the domain's `pay` rule runs inside one diesel transaction, so
//! debit, PAID, payment, ledger entry and token expiry commit together or not at all.

use diesel::prelude::*;
use diesel::sql_types::{BigInt, Nullable, Text, Timestamptz, Uuid as SqlUuid};
use domain::account::LedgerEntry;
use domain::error::PayError;
use domain::ids::{ReservationId, UserId};
use domain::money::Won;
use domain::payment::Payment;
use domain::ports::{DebitOutcome, PaymentTx, PaymentUnitOfWork, PaymentWork, StoreError};
use domain::reservation::Reservation;
use time::OffsetDateTime;

use crate::accounts;
use crate::error::{from_diesel, loses_connection, TxError};
use crate::reservations::{reservation_columns, ReservationRow};
use crate::sql::prepared;
use crate::PgStore;

/// A write the payment asked for, not yet sent.
#[derive(Debug)]
enum Write {
    MarkPaid { id: ReservationId, at: OffsetDateTime },
    Payment(Payment),
    Ledger(LedgerEntry),
    ExpireTokens { user: UserId, at: OffsetDateTime },
}

/// A payment's view of its open transaction.
///
/// Reads (`lock_reservation`, `debit`, whose result the domain needs) run at once. The writes
/// after them only matter together, at commit, so they are queued and sent just before the
/// next read or before COMMIT; the domain's usual sequence (mark paid, payment, ledger entry,
/// token expiry) goes as one statement of data-modifying CTEs. That saves three round trips
/// while the reservation and account rows are locked, and changes nothing a caller can see:
/// nothing reads between the writes, and all of them still commit or roll back together.
struct PgPaymentTx<'c> {
    conn: &'c mut PgConnection,
    /// Set when a statement failed because the connection is gone.
    lost: &'c mut bool,
    pending: Vec<Write>,
}

impl PgPaymentTx<'_> {
    /// Maps a failure for the domain, remembering a lost connection for the pool.
    fn fail(&mut self, e: diesel::result::Error) -> StoreError {
        if loses_connection(&e) {
            *self.lost = true;
        }
        from_diesel(e)
    }

    /// Sends the queued writes.
    fn flush(&mut self) -> Result<(), StoreError> {
        let pending = std::mem::take(&mut self.pending);
        match pending.as_slice() {
            [] => Ok(()),
            [Write::MarkPaid { id, at }, Write::Payment(p), Write::Ledger(l), Write::ExpireTokens { user, at: expired_at }]
                if p.reservation_id == *id && l.payment_id == Some(p.id) =>
            {
                let n = prepared(
                    "WITH r AS ( \
                       UPDATE reservations SET status = 'PAID', paid_at = $2 \
                       WHERE id = $1 AND status = 'HELD' RETURNING id), \
                     p AS ( \
                       INSERT INTO payments (id, reservation_id, user_id, amount, balance_after, paid_at) \
                       SELECT $3, r.id, $4, $5, $6, $7 FROM r RETURNING id), \
                     l AS ( \
                       INSERT INTO ledger_entries \
                         (id, user_id, kind, amount, balance_after, at, payment_id, reservation_id) \
                       SELECT $8, $9, $10, $11, $12, $13, p.id, $14 FROM p RETURNING id), \
                     t AS ( \
                       UPDATE queue_tokens SET status = 'EXPIRED', expires_at = $16 \
                       WHERE user_id = $15 AND status IN ('WAITING', 'ACTIVE')) \
                     SELECT count(*) AS n FROM l",
                )
                .bind::<SqlUuid, _>(id.as_uuid())
                .bind::<Timestamptz, _>(*at)
                .bind::<SqlUuid, _>(p.id.as_uuid())
                .bind::<SqlUuid, _>(p.user_id.as_uuid())
                .bind::<BigInt, _>(p.amount.get())
                .bind::<BigInt, _>(p.balance_after.get())
                .bind::<Timestamptz, _>(p.paid_at)
                .bind::<SqlUuid, _>(l.id.as_uuid())
                .bind::<SqlUuid, _>(l.user_id.as_uuid())
                .bind::<Text, _>(l.kind.as_str())
                .bind::<BigInt, _>(l.amount.get())
                .bind::<BigInt, _>(l.balance_after.get())
                .bind::<Timestamptz, _>(l.at)
                .bind::<Nullable<SqlUuid>, _>(l.reservation_id.map(|r| r.as_uuid()))
                .bind::<SqlUuid, _>(user.as_uuid())
                .bind::<Timestamptz, _>(*expired_at)
                .get_result::<Count>(self.conn)
                .map_err(|e| self.fail(e))?
                .n;
                // Nothing after the mark-paid CTE runs when it updated nothing.
                if n == 1 {
                    Ok(())
                } else {
                    Err(not_held(*id))
                }
            }
            writes => writes.iter().try_for_each(|w| self.write(w)),
        }
    }

    /// Sends one write as its own statement (any order the domain may use).
    fn write(&mut self, w: &Write) -> Result<(), StoreError> {
        match w {
            Write::MarkPaid { id, at } => {
                let n =
                    prepared("UPDATE reservations SET status = 'PAID', paid_at = $2 WHERE id = $1 AND status = 'HELD'")
                        .bind::<SqlUuid, _>(id.as_uuid())
                        .bind::<Timestamptz, _>(*at)
                        .execute(self.conn)
                        .map_err(|e| self.fail(e))?;
                if n == 1 {
                    Ok(())
                } else {
                    Err(not_held(*id))
                }
            }
            Write::Payment(p) => prepared(
                "INSERT INTO payments (id, reservation_id, user_id, amount, balance_after, paid_at) \
                 VALUES ($1, $2, $3, $4, $5, $6)",
            )
            .bind::<SqlUuid, _>(p.id.as_uuid())
            .bind::<SqlUuid, _>(p.reservation_id.as_uuid())
            .bind::<SqlUuid, _>(p.user_id.as_uuid())
            .bind::<BigInt, _>(p.amount.get())
            .bind::<BigInt, _>(p.balance_after.get())
            .bind::<Timestamptz, _>(p.paid_at)
            .execute(self.conn)
            .map(|_| ())
            .map_err(|e| self.fail(e)),
            Write::Ledger(entry) => accounts::insert_ledger(self.conn, entry).map_err(|e| self.fail(e)),
            Write::ExpireTokens { user, at } => prepared(
                "UPDATE queue_tokens SET status = 'EXPIRED', expires_at = $2 \
                 WHERE user_id = $1 AND status IN ('WAITING', 'ACTIVE')",
            )
            .bind::<SqlUuid, _>(user.as_uuid())
            .bind::<Timestamptz, _>(*at)
            .execute(self.conn)
            .map(|_| ())
            .map_err(|e| self.fail(e)),
        }
    }
}

/// The domain only marks a reservation it locked and saw HELD; anything else is a bug, and
/// the error rolls the payment back.
fn not_held(id: ReservationId) -> StoreError {
    StoreError::Internal(format!("reservation {id} was not HELD when marked paid"))
}

#[derive(Debug, QueryableByName)]
struct Count {
    #[diesel(sql_type = BigInt)]
    n: i64,
}

impl PaymentTx for PgPaymentTx<'_> {
    fn lock_reservation(&mut self, id: ReservationId) -> Result<Option<Reservation>, StoreError> {
        self.flush()?;
        // FOR UPDATE: concurrent payments of this reservation, and a hold or sweep expiring it,
        // wait here until we commit or roll back, then see our outcome.
        let row: Option<ReservationRow> =
            prepared(concat!("SELECT ", reservation_columns!(), " FROM reservations WHERE id = $1 FOR UPDATE"))
                .bind::<SqlUuid, _>(id.as_uuid())
                .get_result(self.conn)
                .optional()
                .map_err(|e| self.fail(e))?;
        row.map(ReservationRow::into_domain).transpose()
    }

    fn debit(&mut self, user: UserId, amount: Won) -> Result<DebitOutcome, StoreError> {
        self.flush()?;
        accounts::debit(self.conn, user.as_uuid(), amount).map_err(|e| self.fail(e))
    }

    fn mark_paid(&mut self, id: ReservationId, at: OffsetDateTime) -> Result<(), StoreError> {
        self.pending.push(Write::MarkPaid { id, at });
        Ok(())
    }

    fn record_payment(&mut self, payment: &Payment) -> Result<(), StoreError> {
        self.pending.push(Write::Payment(payment.clone()));
        Ok(())
    }

    fn append_ledger(&mut self, entry: &LedgerEntry) -> Result<(), StoreError> {
        self.pending.push(Write::Ledger(entry.clone()));
        Ok(())
    }

    fn expire_tokens_of(&mut self, user: UserId, at: OffsetDateTime) -> Result<(), StoreError> {
        self.pending.push(Write::ExpireTokens { user, at });
        Ok(())
    }
}

impl PaymentUnitOfWork for PgStore {
    fn run(&self, work: &mut PaymentWork<'_>) -> Result<Payment, PayError> {
        let mut conn = self.conn()?;
        let mut lost = false;
        // The work's own error travels out as `TxError::Abort`, which makes diesel roll back;
        // so does a failure of the queued writes, sent before COMMIT.
        let result = conn.run(|c| {
            c.transaction::<Payment, TxError<PayError>, _>(|c| {
                let mut tx = PgPaymentTx { conn: c, lost: &mut lost, pending: Vec::new() };
                let payment = work(&mut tx).map_err(TxError::Abort)?;
                tx.flush().map_err(|e| TxError::Abort(PayError::Store(e)))?;
                Ok(payment)
            })
        });
        // A statement of the work found the connection dead; its error reached the domain as
        // a `StoreError`, so it is remembered here instead.
        if lost {
            conn.mark_broken();
        }
        result.map_err(|e| match e {
            TxError::Abort(pay) => pay,
            TxError::Db(db) => PayError::Store(from_diesel(db)),
        })
    }
}
