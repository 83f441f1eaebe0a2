//! Running a call's work on a pooled connection: a single autocommit statement, or a
//! transaction that commits only within the call's budget. Every failure leaves through
//! [`crate::error::classify`], with the connection at hand.

use std::time::{Duration, Instant};

use diesel::connection::{AnsiTransactionManager, SimpleConnection as _, TransactionManager as _};
use diesel::prelude::*;
use domain::ports::StoreError;

use crate::error::{classify, connection_lost, After, Fail, Waits};
use crate::pool::PgConn;

/// What bounds a call's work (see `config`).
#[derive(Debug, Clone, Copy)]
pub(crate) struct Limits {
    /// When a failed statement counts as having given up waiting.
    pub(crate) waits: Waits,
    /// A transaction is not committed once its call has run this long.
    pub(crate) budget: Duration,
    /// Most issues per group-commit batch.
    pub(crate) issue_batch_max: usize,
}

/// An open transaction, handed to a unit of work.
pub(crate) struct Tx<'a> {
    pg: &'a mut PgConn,
    waits: Waits,
    deadline: Instant,
}

impl Tx<'_> {
    /// The connection, to run the next statement on, unless the call's budget has run out:
    /// then `Timeout` (the transaction rolls back), so a call never starts a statement after
    /// its budget and ends within the budget plus one statement timeout.
    pub(crate) fn conn(&mut self) -> Result<&mut PgConnection, StoreError> {
        if Instant::now() >= self.deadline {
            return Err(out_of_budget());
        }
        Ok(&mut self.pg.conn)
    }

    /// Whether the statement that just failed with `e` gave up waiting for a lock (not on its
    /// statement timeout, nor on a server that stopped answering). Ask before running anything
    /// else.
    pub(crate) fn gave_up_on_lock(&self, e: &diesel::result::Error) -> bool {
        self.waits.gave_up_on_lock(e, self.pg)
    }
}

/// Runs one statement (or several independent ones, each committing itself) on `pg`.
pub(crate) fn autocommit<T>(
    pg: &mut PgConn,
    waits: Waits,
    f: impl FnOnce(&mut PgConnection) -> QueryResult<T>,
) -> Result<T, StoreError> {
    f(&mut pg.conn).map_err(|e| {
        let gave_up = waits.gave_up(&e, pg);
        classify(e, pg, gave_up, After::Probe)
    })
}

/// Runs `f` in a transaction opened by `begin` (`BEGIN`, optionally followed by a lock
/// statement sent in the same round trip), and commits it unless `deadline` has passed, in
/// which case it rolls back and answers `Timeout`: a call that fails never commits later.
///
/// `f` may end with [`Fail::Refuse`] to roll back and return its own outcome (`Ok(Err(e))`).
pub(crate) fn transaction<T, E>(
    pg: &mut PgConn,
    begin: &str,
    deadline: Instant,
    waits: Waits,
    f: impl FnOnce(&mut Tx<'_>) -> Result<T, Fail<E>>,
) -> Result<Result<T, E>, StoreError> {
    if let Err(e) = AnsiTransactionManager::begin_transaction_sql(&mut pg.conn, begin) {
        let gave_up = waits.gave_up(&e, pg);
        // When the lock after BEGIN failed, the server is inside an aborted transaction that
        // diesel does not know was opened: close it by hand.
        let closed = pg.conn.batch_execute("ROLLBACK");
        let after = settle(pg, closed);
        return Err(classify(e, pg, gave_up, after));
    }
    let outcome = f(&mut Tx { pg, waits, deadline });
    match outcome {
        Ok(value) => {
            if Instant::now() >= deadline {
                rollback(pg);
                return Err(out_of_budget());
            }
            // The caller may have answered "nothing was done" while this call waited on a server
            // that froze: then this transaction must not commit (see `domain::call`). Past this
            // point the caller waits for the outcome, however late.
            if !domain::call::commit_point() {
                rollback(pg);
                return Err(StoreError::Timeout(
                    "the caller gave up before COMMIT; the transaction was rolled back".into(),
                ));
            }
            match AnsiTransactionManager::commit_transaction(&mut pg.conn) {
                Ok(()) => Ok(Ok(value)),
                // The COMMIT was sent and no answer came: it may have committed. Saying
                // "unavailable" (nothing was done) could be false; the outcome is unknown.
                Err(e) if connection_lost(&e) => {
                    pg.broken = true;
                    Err(StoreError::Internal(format!(
                        "the connection was lost while committing; the outcome is unknown: {e}"
                    )))
                }
                Err(e) => {
                    let gave_up = waits.gave_up(&e, pg);
                    Err(classify(e, pg, gave_up, After::Probe))
                }
            }
        }
        Err(Fail::Refuse(refusal)) => {
            rollback(pg);
            Ok(Err(refusal))
        }
        Err(Fail::Store(e)) => {
            rollback(pg);
            Err(e)
        }
        Err(Fail::Db(e)) => {
            let gave_up = waits.gave_up(&e, pg);
            let after = rollback(pg);
            Err(classify(e, pg, gave_up, after))
        }
    }
}

fn out_of_budget() -> StoreError {
    StoreError::Timeout("the call's time budget ran out before COMMIT; the transaction was rolled back".into())
}

/// Rolls back the open transaction; a connection on which that fails leaves the pool (the
/// server rolls back a transaction whose connection closes).
fn rollback(pg: &mut PgConn) -> After {
    let result = AnsiTransactionManager::rollback_transaction(&mut pg.conn);
    settle(pg, result)
}

fn settle(pg: &mut PgConn, result: QueryResult<()>) -> After {
    match result {
        Ok(()) => After::RolledBack,
        Err(e) => {
            pg.broken = true;
            if connection_lost(&e) {
                After::Lost
            } else {
                After::RolledBack
            }
        }
    }
}
