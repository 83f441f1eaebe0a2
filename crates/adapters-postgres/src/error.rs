//! The one place where diesel and pool failures become [`StoreError`]s: "cannot reach the
//! database" is `Unavailable` (the HTTP adapter answers 503 + `Retry-After`), anything else is
//! `Internal`.

use diesel::r2d2::PoolError;
use diesel::result::{DatabaseErrorKind, Error as DieselError};
use domain::ports::StoreError;

/// Whether `e` means the connection it came from can no longer be used: libpq lost the
/// socket (diesel reports `ClosedConnection` whenever libpq's status is `CONNECTION_BAD`), could
/// not send, or the server said it is terminating the session (SQLSTATE class 57P, sent just
/// before it closes the socket). The pool then drops the connection instead of reusing it.
pub(crate) fn loses_connection(e: &DieselError) -> bool {
    match e {
        DieselError::DatabaseError(DatabaseErrorKind::ClosedConnection | DatabaseErrorKind::UnableToSendCommand, _) => {
            true
        }
        DieselError::DatabaseError(_, info) => {
            info.message().contains("terminating connection") || info.message().contains("the database system is")
        }
        _ => false,
    }
}

/// Maps a query failure.
pub(crate) fn from_diesel(e: DieselError) -> StoreError {
    match &e {
        _ if loses_connection(&e) => StoreError::Unavailable(e.to_string()),
        // A statement cut off by `statement_timeout`: the database is overloaded, not broken,
        // so retrying later is the right advice (the connection itself stays usable).
        DieselError::DatabaseError(_, info) if info.message().contains("statement timeout") => {
            StoreError::Unavailable(e.to_string())
        }
        _ => StoreError::Internal(e.to_string()),
    }
}

/// Maps a pool checkout failure: no connection could be had within the connection timeout,
/// which only happens when the database is down or saturated.
pub(crate) fn from_pool(e: &PoolError) -> StoreError {
    StoreError::Unavailable(e.to_string())
}

/// A stored value the domain cannot represent (a status spelled wrong, a negative seat
/// number): the schema's CHECKs should make this impossible.
pub(crate) fn corrupt(what: &str) -> StoreError {
    StoreError::Internal(format!("corrupt row: {what}"))
}

/// A transaction's error: either the database failed or the work asked to roll back with a
/// value of its own.
#[derive(Debug)]
pub(crate) enum TxError<E> {
    /// The database failed.
    Db(DieselError),
    /// The work's own outcome, returned after the rollback.
    Abort(E),
}

impl<E> From<DieselError> for TxError<E> {
    fn from(e: DieselError) -> Self {
        Self::Db(e)
    }
}
