//! The waiting queue: issue with a gapless sequence, lookups with the position cursor, and
//! set-based admission and expiry that stay correct with several instances ticking at once.

use diesel::prelude::*;
use diesel::sql_types::{BigInt, Bool, Nullable, Text, Timestamptz, Uuid as SqlUuid};
use domain::ids::UserId;
use domain::ports::{IssueOutcome, QueueStore, StoreError};
use domain::queue::{AdmissionOutcome, AdmissionPolicy, QueueCursor, QueueToken, TokenStatus, TokenValue};
use time::OffsetDateTime;
use uuid::Uuid;

use crate::error::{corrupt, from_diesel, TxError};
use crate::schema::{queue_admission, queue_tokens};
use crate::sql::prepared;
use crate::PgStore;

/// Transaction-level advisory lock key of the admission tick (per database). Transaction-level
/// so it can never outlive the tick on a pooled connection.
const ADMISSION_LOCK: i64 = 0x636f_6e63_6572_7401;

/// The columns of [`TokenRow`], for `concat!` into `&'static str` statements (see `sql`).
macro_rules! token_columns {
    () => {
        "t.seq, t.token, t.user_id, t.status, t.issued_at, t.activated_at, t.expires_at"
    };
}

#[derive(Debug, QueryableByName, Queryable, Selectable)]
#[diesel(table_name = queue_tokens, check_for_backend(diesel::pg::Pg))]
pub(crate) struct TokenRow {
    seq: i64,
    token: String,
    user_id: Uuid,
    status: String,
    issued_at: OffsetDateTime,
    activated_at: Option<OffsetDateTime>,
    expires_at: Option<OffsetDateTime>,
}

impl TokenRow {
    fn into_domain(self) -> Result<QueueToken, StoreError> {
        Ok(QueueToken {
            value: TokenValue::parse(&self.token).map_err(|_| corrupt("queue_tokens.token"))?,
            user_id: UserId::from_uuid(self.user_id),
            seq: self.seq,
            status: TokenStatus::parse(&self.status).ok_or_else(|| corrupt("queue_tokens.status"))?,
            issued_at: self.issued_at,
            activated_at: self.activated_at,
            expires_at: self.expires_at,
        })
    }
}

#[derive(Debug, QueryableByName)]
struct CursorRow {
    #[diesel(sql_type = BigInt)]
    admitted_through: i64,
    #[diesel(sql_type = Nullable<Timestamptz>)]
    last_admission_at: Option<OffsetDateTime>,
}

impl CursorRow {
    fn into_domain(self) -> QueueCursor {
        QueueCursor { admitted_through: self.admitted_through, last_admission_at: self.last_admission_at }
    }
}

#[derive(Debug, QueryableByName)]
struct Flag {
    #[diesel(sql_type = Bool)]
    flag: bool,
}

#[derive(Debug, QueryableByName)]
struct Count {
    #[diesel(sql_type = BigInt)]
    n: i64,
}

/// The user's WAITING or ACTIVE row (at most one, by the partial unique index).
fn live_row(conn: &mut PgConnection, user: Uuid) -> QueryResult<Option<TokenRow>> {
    prepared(concat!(
        "SELECT ",
        token_columns!(),
        " FROM queue_tokens t WHERE t.user_id = $1 AND t.status IN ('WAITING', 'ACTIVE')"
    ))
    .bind::<SqlUuid, _>(user)
    .get_result(conn)
    .optional()
}

/// Why an issue transaction rolled back.
#[derive(Debug)]
enum IssueAbort {
    /// A concurrent issue for the same user committed first: its token wins.
    Conflict,
    /// No connection, or a row we cannot map.
    Failed(StoreError),
}

/// Stores a new WAITING token with the next number, in one statement: the counter row is
/// locked (`FOR UPDATE`) and read, the token inserted with `last_seq + 1`, and the counter set
/// to it only if the insert happened. Issuers queue on the counter row lock, which is held to
/// the end of the transaction (in autocommit: the statement and its commit), so they commit in
/// `seq` order; a token that is not inserted (the user got one concurrently, `DO NOTHING`) or
/// a failed statement leaves the counter as it was, so the sequence stays gapless. The lock is
/// held for this one statement and its WAL flush, nothing else.
fn insert_next(
    c: &mut PgConnection,
    user: Uuid,
    value: &TokenValue,
    now: OffsetDateTime,
) -> Result<IssueOutcome, TxError<IssueAbort>> {
    let inserted: Option<TokenRow> = prepared(concat!(
        "WITH n AS (SELECT last_seq FROM queue_counter FOR UPDATE), \
         t AS ( \
           INSERT INTO queue_tokens AS t (seq, token, user_id, status, issued_at) \
           SELECT n.last_seq + 1, $1, $2, 'WAITING', $3 FROM n \
           ON CONFLICT (user_id) WHERE status IN ('WAITING', 'ACTIVE') DO NOTHING \
           RETURNING ",
        token_columns!(),
        "), \
         c AS (UPDATE queue_counter SET last_seq = t.seq FROM t) \
         SELECT ",
        token_columns!(),
        " FROM t"
    ))
    .bind::<Text, _>(value.as_str())
    .bind::<SqlUuid, _>(user)
    .bind::<Timestamptz, _>(now)
    .get_result(c)
    .optional()?;
    let row = inserted.ok_or(TxError::Abort(IssueAbort::Conflict))?;
    let token = row.into_domain().map_err(|e| TxError::Abort(IssueAbort::Failed(e)))?;
    Ok(IssueOutcome { token, created: true })
}

impl PgStore {
    fn try_issue(
        &self,
        user: Uuid,
        value: &TokenValue,
        now: OffsetDateTime,
    ) -> Result<IssueOutcome, TxError<IssueAbort>> {
        let mut conn = self.conn().map_err(|e| TxError::Abort(IssueAbort::Failed(e)))?;
        conn.run(|c| {
            // Read before any lock: a user already in line (the common repeat) costs one read,
            // and the counter lock is only taken to insert.
            let Some(row) = live_row(c, user)? else {
                return insert_next(c, user, value, now);
            };
            let token = row.into_domain().map_err(|e| TxError::Abort(IssueAbort::Failed(e)))?;
            if token.is_live_at(now) {
                return Ok(IssueOutcome { token, created: false });
            }
            // Rare: an ACTIVE token whose time is up (WAITING ones are always live). Expiring it
            // frees the user's slot in the partial unique index; one transaction with the
            // insert, so a failed issue stores nothing. If another issue got in first, the
            // insert does nothing and the caller retries, finding that token live.
            c.transaction(|c| {
                prepared("UPDATE queue_tokens SET status = 'EXPIRED' WHERE seq = $1 AND status = 'ACTIVE'")
                    .bind::<BigInt, _>(token.seq)
                    .execute(c)?;
                insert_next(c, user, value, now)
            })
        })
    }
}

impl QueueStore for PgStore {
    fn issue(&self, user: UserId, value: TokenValue, now: OffsetDateTime) -> Result<IssueOutcome, StoreError> {
        // A conflict means another issue for this user committed; the next attempt finds its
        // token in the first statement. Three attempts cover a token that also lapses in between.
        for _ in 0..3 {
            match self.try_issue(user.as_uuid(), &value, now) {
                Ok(outcome) => return Ok(outcome),
                Err(TxError::Abort(IssueAbort::Conflict)) => {}
                Err(TxError::Abort(IssueAbort::Failed(e))) => return Err(e),
                Err(TxError::Db(e)) => return Err(from_diesel(e)),
            }
        }
        Err(StoreError::Internal("issue kept conflicting with concurrent issues for the same user".into()))
    }

    fn find(&self, value: &TokenValue) -> Result<Option<QueueToken>, StoreError> {
        // Every protected request's authorization: the query DSL, so diesel prepares it once
        // per connection.
        let row: Option<TokenRow> = self.with_conn(|c| {
            queue_tokens::table
                .filter(queue_tokens::token.eq(value.as_str()))
                .select(TokenRow::as_select())
                .get_result(c)
                .optional()
        })?;
        row.map(TokenRow::into_domain).transpose()
    }

    fn find_with_cursor(&self, value: &TokenValue) -> Result<Option<(QueueToken, QueueCursor)>, StoreError> {
        // Every poll: one prepared statement, the token joined to the one-row cursor table
        // (`ON queue_admission.id`, which is the constant TRUE).
        let row: Option<(TokenRow, (i64, Option<OffsetDateTime>))> = self.with_conn(|c| {
            queue_tokens::table
                .inner_join(queue_admission::table.on(queue_admission::id))
                .filter(queue_tokens::token.eq(value.as_str()))
                .select((
                    TokenRow::as_select(),
                    (queue_admission::admitted_through, queue_admission::last_admission_at),
                ))
                .get_result(c)
                .optional()
        })?;
        row.map(|(token, (admitted_through, last_admission_at))| {
            Ok((token.into_domain()?, QueueCursor { admitted_through, last_admission_at }))
        })
        .transpose()
    }

    fn cursor(&self) -> Result<QueueCursor, StoreError> {
        self.with_conn(|c| {
            prepared("SELECT admitted_through, last_admission_at FROM queue_admission").get_result::<CursorRow>(c)
        })
        .map(CursorRow::into_domain)
    }

    fn admit(&self, policy: &AdmissionPolicy, now: OffsetDateTime) -> Result<AdmissionOutcome, StoreError> {
        self.with_conn(|c| {
            c.transaction(|c| {
                // Another instance is mid-tick: it will have admitted by the time we could, so
                // waiting would only end in NotDue.
                let locked = prepared("SELECT pg_try_advisory_xact_lock($1) AS flag")
                    .bind::<BigInt, _>(ADMISSION_LOCK)
                    .get_result::<Flag>(c)?
                    .flag;
                if !locked {
                    return Ok(AdmissionOutcome::Busy);
                }
                // The row lock is the real serialisation point (it also holds against a caller
                // that does not take the advisory lock); FOR UPDATE reads the latest commit.
                let cursor = prepared("SELECT admitted_through, last_admission_at FROM queue_admission FOR UPDATE")
                    .get_result::<CursorRow>(c)?;
                if !policy.is_due(cursor.last_admission_at, now) {
                    return Ok(AdmissionOutcome::NotDue {
                        next_at: policy.next_admission_at(cursor.last_admission_at, now),
                    });
                }
                // Every seq up to the committed counter belongs to a committed token (the
                // counter and the token are written in one transaction).
                let last_seq = prepared("SELECT last_seq AS n FROM queue_counter").get_result::<Count>(c)?.n;
                let waiting = u64::try_from(last_seq - cursor.admitted_through).unwrap_or(0);
                let active = if policy.max_active.is_some() {
                    let n =
                        prepared("SELECT count(*) AS n FROM queue_tokens WHERE status = 'ACTIVE' AND expires_at > $1")
                            .bind::<Timestamptz, _>(now)
                            .get_result::<Count>(c)?
                            .n;
                    u64::try_from(n).unwrap_or(0)
                } else {
                    0
                };
                let n = policy.quota(active, waiting);
                if n == 0 {
                    return Ok(AdmissionOutcome::Admitted(0));
                }
                let n_i64 = i64::try_from(n).unwrap_or(i64::MAX);
                let through = cursor.admitted_through.saturating_add(n_i64);
                prepared(
                    "UPDATE queue_tokens SET status = 'ACTIVE', activated_at = $1, expires_at = $2 \
                     WHERE seq > $3 AND seq <= $4 AND status = 'WAITING'",
                )
                .bind::<Timestamptz, _>(now)
                .bind::<Timestamptz, _>(policy.expiry_for(now))
                .bind::<BigInt, _>(cursor.admitted_through)
                .bind::<BigInt, _>(through)
                .execute(c)?;
                prepared("UPDATE queue_admission SET admitted_through = $1, last_admission_at = $2")
                    .bind::<BigInt, _>(through)
                    .bind::<Timestamptz, _>(now)
                    .execute(c)?;
                Ok(AdmissionOutcome::Admitted(n))
            })
        })
    }

    fn expire_tokens(&self, now: OffsetDateTime) -> Result<u64, StoreError> {
        // Concurrent sweeps: the second waits on the first's row locks, re-checks the WHERE
        // on the new row versions and skips them, so each token changes once.
        let n = self.with_conn(|c| {
            prepared("UPDATE queue_tokens SET status = 'EXPIRED' WHERE status = 'ACTIVE' AND expires_at <= $1")
                .bind::<Timestamptz, _>(now)
                .execute(c)
        })?;
        Ok(n as u64)
    }
}
