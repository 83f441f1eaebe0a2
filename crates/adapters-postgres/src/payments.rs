//! The payment unit of work: the domain's `pay` rule runs inside one diesel transaction, so
//! debit, PAID, payment, ledger entry and token expiry commit together or not at all.

use diesel::prelude::*;
use diesel::sql_types::{Timestamptz, Uuid as SqlUuid};
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
use crate::schema::payments;
use crate::sql::prepared;
use crate::PgStore;

/// A payment's view of its open transaction.
struct PgPaymentTx<'c> {
    conn: &'c mut PgConnection,
    /// Set when a statement failed because the connection is gone.
    lost: &'c mut bool,
}

impl PgPaymentTx<'_> {
    /// Maps a failure for the domain, remembering a lost connection for the pool.
    fn fail(&mut self, e: diesel::result::Error) -> StoreError {
        if loses_connection(&e) {
            *self.lost = true;
        }
        from_diesel(e)
    }
}

#[derive(Debug, Insertable)]
#[diesel(table_name = payments)]
struct NewPayment {
    id: uuid::Uuid,
    reservation_id: uuid::Uuid,
    user_id: uuid::Uuid,
    amount: i64,
    balance_after: i64,
    paid_at: OffsetDateTime,
}

impl PaymentTx for PgPaymentTx<'_> {
    fn lock_reservation(&mut self, id: ReservationId) -> Result<Option<Reservation>, StoreError> {
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
        accounts::debit(self.conn, user.as_uuid(), amount).map_err(|e| self.fail(e))
    }

    fn mark_paid(&mut self, id: ReservationId, at: OffsetDateTime) -> Result<(), StoreError> {
        let n = prepared("UPDATE reservations SET status = 'PAID', paid_at = $2 WHERE id = $1 AND status = 'HELD'")
            .bind::<SqlUuid, _>(id.as_uuid())
            .bind::<Timestamptz, _>(at)
            .execute(self.conn)
            .map_err(|e| self.fail(e))?;
        if n == 1 {
            Ok(())
        } else {
            // The domain only marks a reservation it locked and saw HELD; anything else is a
            // bug, and the error rolls the payment back.
            Err(StoreError::Internal(format!("reservation {id} was not HELD when marked paid")))
        }
    }

    fn record_payment(&mut self, p: &Payment) -> Result<(), StoreError> {
        diesel::insert_into(payments::table)
            .values(NewPayment {
                id: p.id.as_uuid(),
                reservation_id: p.reservation_id.as_uuid(),
                user_id: p.user_id.as_uuid(),
                amount: p.amount.get(),
                balance_after: p.balance_after.get(),
                paid_at: p.paid_at,
            })
            .execute(self.conn)
            .map(|_| ())
            .map_err(|e| self.fail(e))
    }

    fn append_ledger(&mut self, entry: &LedgerEntry) -> Result<(), StoreError> {
        accounts::insert_ledger(self.conn, entry).map_err(|e| self.fail(e))
    }

    fn expire_tokens_of(&mut self, user: UserId, at: OffsetDateTime) -> Result<(), StoreError> {
        prepared(
            "UPDATE queue_tokens SET status = 'EXPIRED', expires_at = $2 \
             WHERE user_id = $1 AND status IN ('WAITING', 'ACTIVE')",
        )
        .bind::<SqlUuid, _>(user.as_uuid())
        .bind::<Timestamptz, _>(at)
        .execute(self.conn)
        .map(|_| ())
        .map_err(|e| self.fail(e))
    }
}

impl PaymentUnitOfWork for PgStore {
    fn run(&self, work: &mut PaymentWork<'_>) -> Result<Payment, PayError> {
        let mut conn = self.conn()?;
        let mut lost = false;
        // The work's own error travels out as `TxError::Abort`, which makes diesel roll back.
        let result = conn.run(|c| {
            c.transaction::<Payment, TxError<PayError>, _>(|c| {
                let mut tx = PgPaymentTx { conn: c, lost: &mut lost };
                work(&mut tx).map_err(TxError::Abort)
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
