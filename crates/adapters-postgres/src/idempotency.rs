//! Records of keyed requests (`Idempotency-Key`), and the claim that the keyed units of work
//! (`AccountStore::credit`, `PaymentStore::pay`) make first, inside their own transaction.
//!
//! The claim is an insert keyed `(user_id, key)`. A concurrent claimer of the same key waits on
//! that unique index entry until the first transaction ends: if it committed, its record is
//! there and is returned (`Recorded`); if it rolled back (a refused or failed request records
//! nothing), the waiter's insert goes through and it runs. A wait longer than `lock_timeout`
//! means the first is still running: `InFlight`, and nothing ran. A record past its
//! `expires_at` is reclaimed by the same statement (`DO UPDATE ... WHERE` expired). The claim
//! row is completed with the response and the effect's ledger entry before commit, so a
//! committed row always carries them (a CHECK says so).

use diesel::prelude::*;
use diesel::sql_types::{BigInt, Int4, Nullable, Text, Timestamptz, Uuid as SqlUuid};
use domain::idempotency::{Claimed, Fingerprint, IdempotencyGuard, IdempotencyKey, IdempotencyRecord, StoredResponse};
use domain::ids::UserId;
use domain::ports::{IdempotencyStore, StoreError};
use time::OffsetDateTime;

use crate::error::{corrupt, Fail};
use crate::sql::prepared;
use crate::work::Tx;
use crate::PgStore;

/// Claims `($1, $2)`; returns a row only when this transaction now owns the key (a new claim,
/// or an expired record taken over). Without a row, the key holds an unexpired record that
/// committed (a claim still running makes this wait, see the module docs), now locked by us.
pub(crate) const CLAIM: &str = "INSERT INTO idempotency_keys AS k (user_id, key, fingerprint, created_at, expires_at) \
     VALUES ($1, $2, $3, $4, $5) \
     ON CONFLICT (user_id, key) DO UPDATE \
       SET fingerprint = EXCLUDED.fingerprint, status = NULL, body = NULL, ledger_entry_id = NULL, \
           created_at = EXCLUDED.created_at, expires_at = EXCLUDED.expires_at \
       WHERE k.expires_at <= EXCLUDED.created_at \
     RETURNING 1 AS claimed";

/// The record of a key (a statement of its own after a claim that returned no row, so its
/// snapshot includes the commit the claim waited for).
pub(crate) const READ_RECORD: &str =
    "SELECT fingerprint, status, body FROM idempotency_keys WHERE user_id = $1 AND key = $2";

/// Completes a claim with the response and the effect's ledger entry.
pub(crate) const RECORD: &str =
    "UPDATE idempotency_keys SET status = $3, body = $4, ledger_entry_id = $5 WHERE user_id = $1 AND key = $2";

/// A committed record, unexpired at `$3`.
pub(crate) const FIND_RECORD: &str = "SELECT fingerprint, status, body FROM idempotency_keys \
     WHERE user_id = $1 AND key = $2 AND expires_at > $3 AND status IS NOT NULL";

/// At most `$2` records expired by `$1` are deleted; SKIP LOCKED leaves a record being
/// reclaimed to its claimer and lets concurrent purges take disjoint rows.
pub(crate) const PURGE: &str = "DELETE FROM idempotency_keys WHERE (user_id, key) IN ( \
       SELECT user_id, key FROM idempotency_keys WHERE expires_at <= $1 \
       ORDER BY expires_at LIMIT $2 FOR UPDATE SKIP LOCKED)";

#[derive(Debug, QueryableByName)]
struct ClaimRow {
    #[diesel(sql_type = Int4)]
    #[allow(dead_code, reason = "only the row's presence matters")]
    claimed: i32,
}

#[derive(Debug, QueryableByName)]
struct RecordRow {
    #[diesel(sql_type = Text)]
    fingerprint: String,
    #[diesel(sql_type = Nullable<Int4>)]
    status: Option<i32>,
    #[diesel(sql_type = Nullable<Text>)]
    body: Option<String>,
}

impl RecordRow {
    /// The record, or `None` for a claim that carries no response (never committed: a
    /// transaction that claims either records or rolls back).
    fn into_domain(self) -> Result<Option<IdempotencyRecord>, StoreError> {
        let (Some(status), Some(body)) = (self.status, self.body) else { return Ok(None) };
        Ok(Some(IdempotencyRecord {
            fingerprint: Fingerprint::from_stored(self.fingerprint),
            response: StoredResponse {
                status: u16::try_from(status).map_err(|_| corrupt("idempotency_keys.status"))?,
                body,
            },
        }))
    }
}

/// Why a keyed unit of work stops at its claim (it then rolls back and answers this).
#[derive(Debug)]
pub(crate) enum Stop {
    /// The key holds an unexpired record: the answer to replay (or to refuse as reused).
    Recorded(IdempotencyRecord),
    /// Another request with the key is still running.
    InFlight,
}

impl Stop {
    pub(crate) fn claimed<T>(self) -> Claimed<T> {
        match self {
            Self::Recorded(record) => Claimed::Recorded(record),
            Self::InFlight => Claimed::InFlight,
        }
    }
}

/// Claims the guard's key inside the open transaction, before the effect: `Ok(None)` when
/// this transaction now owns the key, `Ok(Some(stop))` when the work must stop there.
pub(crate) fn claim<E>(tx: &mut Tx<'_>, guard: &IdempotencyGuard<'_>) -> Result<Option<Stop>, Fail<E>> {
    let claimed = prepared(CLAIM)
        .bind::<SqlUuid, _>(guard.user.as_uuid())
        .bind::<Text, _>(guard.key.as_str())
        .bind::<Text, _>(guard.fingerprint.as_str())
        .bind::<Timestamptz, _>(guard.now)
        .bind::<Timestamptz, _>(guard.expires_at)
        .get_result::<ClaimRow>(tx.conn()?)
        .optional();
    match claimed {
        Ok(Some(_)) => Ok(None),
        Ok(None) => {
            let row: Option<RecordRow> = prepared(READ_RECORD)
                .bind::<SqlUuid, _>(guard.user.as_uuid())
                .bind::<Text, _>(guard.key.as_str())
                .get_result(tx.conn()?)
                .optional()?;
            let record = row.map(RecordRow::into_domain).transpose()?.flatten();
            Ok(Some(record.map_or(Stop::InFlight, Stop::Recorded)))
        }
        // This statement waits only on the key's index entry (a concurrent claimer that has
        // neither committed nor rolled back): giving up on that lock means the other one is in
        // flight. A statement cut off later (a server that stopped answering) is a Timeout.
        Err(e) if tx.gave_up_on_lock(&e) => Ok(Some(Stop::InFlight)),
        Err(e) => Err(e.into()),
    }
}

/// Completes the claim of `guard` with `response` and the effect's ledger entry.
pub(crate) fn record<E>(
    tx: &mut Tx<'_>,
    guard: &IdempotencyGuard<'_>,
    response: &StoredResponse,
    entry: uuid::Uuid,
) -> Result<(), Fail<E>> {
    let n = prepared(RECORD)
        .bind::<SqlUuid, _>(guard.user.as_uuid())
        .bind::<Text, _>(guard.key.as_str())
        .bind::<Int4, _>(i32::from(response.status))
        .bind::<Text, _>(response.body.as_str())
        .bind::<SqlUuid, _>(entry)
        .execute(tx.conn()?)?;
    if n == 1 {
        Ok(())
    } else {
        Err(Fail::Store(StoreError::Internal("the idempotency claim vanished before its record".into())))
    }
}

impl IdempotencyStore for PgStore {
    fn find(
        &self,
        user: UserId,
        key: &IdempotencyKey,
        now: OffsetDateTime,
    ) -> Result<Option<IdempotencyRecord>, StoreError> {
        let row: Option<RecordRow> = self.autocommit(|c| {
            prepared(FIND_RECORD)
                .bind::<SqlUuid, _>(user.as_uuid())
                .bind::<Text, _>(key.as_str())
                .bind::<Timestamptz, _>(now)
                .get_result(c)
                .optional()
        })?;
        Ok(row.map(RecordRow::into_domain).transpose()?.flatten())
    }

    fn purge_expired(&self, now: OffsetDateTime, limit: u32) -> Result<u64, StoreError> {
        let n = self.autocommit(|c| {
            prepared(PURGE).bind::<Timestamptz, _>(now).bind::<BigInt, _>(i64::from(limit)).execute(c)
        })?;
        Ok(n as u64)
    }
}
