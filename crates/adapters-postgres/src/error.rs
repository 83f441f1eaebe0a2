//! The one place where diesel and pool failures become [`StoreError`]s.
//!
//! The port contract: "cannot reach the store" is `Unavailable`, "gave up waiting" (a lock or
//! statement timeout) is `Timeout`, anything else `Internal`; in every case nothing was
//! committed.
//!
//! # How errors are told apart, without reading message text
//!
//! diesel 2.3 (the latest release, 2.3.14) reports a PostgreSQL error as a
//! [`DatabaseErrorKind`] that names a dozen SQLSTATEs (unique, foreign key, check,
//! serialization, closed connection, ...) and `Unknown` for every other one, and it does not
//! expose the SQLSTATE itself: its `DatabaseErrorInformation` gives the message, detail, hint,
//! table, column and constraint, not the code. A lock timeout (55P03), a statement timeout
//! (57014) and an administrator's `pg_terminate_backend` (57P01) therefore all arrive as
//! `Unknown`. Matching the English message text would break with the server's `lc_messages`
//! and with any rewording, so the adapter classifies an `Unknown` error from facts it can
//! observe deterministically:
//!
//! 1. **Is the connection still there?** `ClosedConnection` / `UnableToSendCommand` (diesel
//!    sets those whenever libpq reports the connection bad) are `Unavailable`. For an
//!    `Unknown` error the adapter then uses the connection once more: the ROLLBACK of the
//!    failed transaction, or for a single statement a `SELECT 1`. If that fails with
//!    `ClosedConnection`, the server ended the session (terminated backend, shutdown, crash):
//!    `Unavailable`. The connection is retired from the pool either way.
//! 2. **Did the statement fail only after waiting?** Every pooled connection carries an
//!    instrumentation hook that times each statement. An `Unknown` error from a statement
//!    that ran at least the shorter of `lock_timeout` and `statement_timeout` is `Timeout`:
//!    the server cut it off after it waited that long (lock or statement timeout; a deadlock
//!    is detected after `deadlock_timeout`, 1 s by default, so it lands here too, as a
//!    retryable wait). Otherwise `Internal`.
//!
//! The limit of this rule: an unrelated server error raised by a statement that happened to
//! run longer than `lock_timeout` (a statement that fails late for another reason, such as
//! running out of disk) is reported as `Timeout` (503, retry later) rather than `Internal`
//! (500). Nothing is committed in either case, so the difference is the advice to the client
//! and the log level, never the data.
//!
//! Upgrade path: diesel's main branch adds the SQLSTATE to PostgreSQL errors
//! (`diesel::pg::sql_state` / `PgErrorInformation`); once a release carries it, classify by
//! code: `55P03` (lock_not_available) and `57014` (query_canceled) `Timeout`; class `08`,
//! `57P01`..`57P03` and `53300` `Unavailable`; `40001` / `40P01` `Timeout` (retryable);
//! everything else `Internal`, and drop the timing rule (keep the connection probe for
//! failures that carry no SQLSTATE at all).
//!
//! A COMMIT whose connection dies before the server's answer arrives has an unknown outcome:
//! the server may have committed. The adapter reports `Unavailable`; that is the one case in
//! which a 503 can hide a committed effect, and the reason charges and payments take an
//! `Idempotency-Key` (a retry with it is answered from the record if the effect happened).

use std::time::Duration;

use diesel::connection::SimpleConnection as _;
use diesel::r2d2::PoolError;
use diesel::result::{DatabaseErrorKind, Error as DieselError};
use domain::ports::StoreError;

use crate::pool::PgConn;

/// Whether diesel says the connection is gone.
pub(crate) fn connection_lost(e: &DieselError) -> bool {
    matches!(
        e,
        DieselError::DatabaseError(DatabaseErrorKind::ClosedConnection | DatabaseErrorKind::UnableToSendCommand, _)
    )
}

/// The waits after which a failed statement counts as having given up waiting.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Waits {
    /// The shorter of `lock_timeout` and `statement_timeout`.
    pub(crate) gave_up_after: Duration,
    /// `statement_timeout`: a statement that failed sooner gave up on a lock, not on its own
    /// running time (nor on a server that stopped answering for longer than that).
    pub(crate) statement_timeout: Duration,
}

impl Waits {
    /// Whether the statement that failed with `e` on `conn` gave up waiting (rule 2 above).
    pub(crate) fn gave_up(&self, e: &DieselError, conn: &PgConn) -> bool {
        matches!(e, DieselError::DatabaseError(DatabaseErrorKind::Unknown, _))
            && conn.failed_after().is_some_and(|ran| ran >= self.gave_up_after)
    }

    /// Whether the statement that failed with `e` on `conn` gave up waiting for a lock: it
    /// gave up (rule 2), but before its statement timeout could have cut it off.
    pub(crate) fn gave_up_on_lock(&self, e: &DieselError, conn: &PgConn) -> bool {
        self.gave_up(e, conn) && conn.failed_after().is_some_and(|ran| ran < self.statement_timeout)
    }
}

/// What is known about the connection after a failure.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum After {
    /// The failure was classified before anything else ran on the connection: probe it.
    Probe,
    /// A ROLLBACK ran after the failure and succeeded: the connection is alive.
    RolledBack,
    /// A ROLLBACK ran after the failure and found the connection gone.
    Lost,
}

/// Maps a query failure on `conn` (see the module docs), retiring the connection when it is
/// gone. `gave_up` is rule 2's verdict, taken before anything else ran on the connection (the
/// timing is of the last statement).
pub(crate) fn classify(e: DieselError, conn: &mut PgConn, gave_up: bool, after: After) -> StoreError {
    if connection_lost(&e) {
        conn.broken = true;
        return StoreError::Unavailable(e.to_string());
    }
    if !matches!(e, DieselError::DatabaseError(DatabaseErrorKind::Unknown, _)) {
        return StoreError::Internal(e.to_string());
    }
    let alive = match after {
        After::RolledBack => true,
        After::Lost => false,
        After::Probe => match conn.conn.batch_execute("SELECT 1") {
            Ok(()) => true,
            Err(probe) => !connection_lost(&probe),
        },
    };
    if !alive {
        conn.broken = true;
        StoreError::Unavailable(format!("the server ended the session: {e}"))
    } else if gave_up {
        StoreError::Timeout(e.to_string())
    } else {
        StoreError::Internal(e.to_string())
    }
}

/// Maps a pool checkout failure: no connection could be had within the checkout timeout,
/// because the database is down or every connection is busy.
pub(crate) fn from_pool(e: &PoolError) -> StoreError {
    StoreError::Unavailable(format!("no database connection within the checkout timeout: {e}"))
}

/// A stored value the domain cannot represent (a status spelled wrong, a negative seat
/// number): the schema's CHECKs should make this impossible.
pub(crate) fn corrupt(what: &str) -> StoreError {
    StoreError::Internal(format!("corrupt row: {what}"))
}

/// How a unit of work ends early.
#[derive(Debug)]
pub(crate) enum Fail<E> {
    /// A statement failed; classified with the connection at hand (see [`classify`]).
    Db(DieselError),
    /// Already classified (a row the domain cannot represent, a broken expectation).
    Store(StoreError),
    /// The work's own outcome that must not be committed (a refusal, a replay): the
    /// transaction is rolled back and `E` returned.
    Refuse(E),
}

impl<E> From<DieselError> for Fail<E> {
    fn from(e: DieselError) -> Self {
        Self::Db(e)
    }
}

impl<E> From<StoreError> for Fail<E> {
    fn from(e: StoreError) -> Self {
        Self::Store(e)
    }
}
