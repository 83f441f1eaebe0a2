//! The waiting queue: lookups with the position cursor, admission under one lock on the store's
//! clock, batched expiry, stats. Issue is in `issue` (group commit).

use std::time::Instant;

use diesel::prelude::*;
use diesel::sql_types::{BigInt, Bool, Nullable, Text, Timestamptz};
use domain::ids::UserId;
use domain::ports::{IssueOutcome, QueueStore, StoreError};
use domain::queue::{AdmissionOutcome, AdmissionPolicy, QueueCursor, QueueStats, QueueToken, TokenStatus, TokenValue};
use time::OffsetDateTime;
use uuid::Uuid;

use crate::error::{corrupt, Fail};
use crate::locks::ADMISSION_BEGIN;
use crate::schema::queue_tokens;
use crate::sql::prepared;
use crate::PgStore;

#[derive(Debug, QueryableByName)]
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
    pub(crate) fn into_domain(self) -> Result<QueueToken, StoreError> {
        Ok(QueueToken {
            value: TokenValue::parse(&self.token).map_err(|_| corrupt("queue_tokens.token"))?,
            user_id: UserId::from_uuid(self.user_id),
            seq: self.seq,
            status: self.status.parse::<TokenStatus>().map_err(|_| corrupt("queue_tokens.status"))?,
            issued_at: self.issued_at,
            activated_at: self.activated_at,
            expires_at: self.expires_at,
            expired_reason: None,
        })
    }
}

/// The token with this value: every protected call's authorization.
pub(crate) const FIND_TOKEN: &str =
    "SELECT t.seq, t.token, t.user_id, t.status, t.issued_at, t.activated_at, t.expires_at \
     FROM queue_tokens t WHERE t.token = $1";

/// The token and the one-row cursor, read together: every poll.
pub(crate) const FIND_WITH_CURSOR: &str =
    "SELECT t.seq, t.token, t.user_id, t.status, t.issued_at, t.activated_at, t.expires_at, \
       a.admitted_through, a.last_admission_at \
     FROM queue_tokens t CROSS JOIN queue_admission a WHERE t.token = $1";

pub(crate) const CURSOR: &str = "SELECT admitted_through, last_admission_at FROM queue_admission";

/// Admission's read, after the admission lock: the store's clock (`$1`, or the server's clock
/// *now*, after any wait for the lock), the cursor, the highest `seq` (every lower one is
/// committed: issue batches commit in order) and, when `$2`, the ACTIVE tokens unexpired at
/// that clock (`QueueToken::status_at`).
pub(crate) const ADMIT_READ: &str =
    "WITH clock AS MATERIALIZED (SELECT COALESCE($1::timestamptz, clock_timestamp()) AS now) \
     SELECT clock.now, a.admitted_through, a.last_admission_at, \
       (SELECT COALESCE(max(seq), 0) FROM queue_tokens) AS issued_through, \
       CASE WHEN $2 THEN (SELECT count(*) FROM queue_tokens t \
         WHERE t.status = 'ACTIVE' AND t.expires_at > clock.now) ELSE 0 END AS active \
     FROM queue_admission a, clock";

/// Admission's write: the tokens in `($3, $4]` (all WAITING: a WAITING token leaves the line
/// only by admission) become ACTIVE, and the cursor moves to `$4`; returns how many changed.
pub(crate) const ADMIT_WRITE: &str =
    "WITH t AS (UPDATE queue_tokens SET status = 'ACTIVE', activated_at = $1, expires_at = $2 \
       WHERE seq > $3 AND seq <= $4 AND status = 'WAITING' RETURNING seq) \
     UPDATE queue_admission SET admitted_through = $4, last_admission_at = $1 \
     FROM (SELECT count(*) AS n FROM t) AS c RETURNING c.n";

/// At most `$2` ACTIVE tokens whose time is up at the store's clock (`expires_at <= now`,
/// restating `QueueToken::status_at`) become EXPIRED. SKIP
/// LOCKED: concurrent sweeps take disjoint rows, and a token a payment holds is left to it (or
/// to the next sweep), so each token changes once.
pub(crate) const EXPIRE_TOKENS: &str = "UPDATE queue_tokens SET status = 'EXPIRED' \
     WHERE seq IN (SELECT seq FROM queue_tokens \
       WHERE status = 'ACTIVE' AND expires_at <= COALESCE($1::timestamptz, statement_timestamp()) \
       ORDER BY expires_at LIMIT $2 FOR UPDATE SKIP LOCKED) \
     AND status = 'ACTIVE'";

pub(crate) const USE_UP: &str =
    "UPDATE queue_tokens SET status = 'EXPIRED', expires_at = $2 WHERE token = $1 AND status = 'ACTIVE'";

/// Counts for an operator at the store's clock: waiting is `issued_through - admitted_through`
/// (gapless `seq`, strict FIFO), active counts unexpired ACTIVE tokens.
pub(crate) const STATS: &str =
    "WITH clock AS MATERIALIZED (SELECT COALESCE($1::timestamptz, statement_timestamp()) AS now) \
     SELECT clock.now, a.admitted_through, a.last_admission_at, \
       (SELECT COALESCE(max(seq), 0) FROM queue_tokens) AS issued_through, \
       (SELECT count(*) FROM queue_tokens t WHERE t.status = 'ACTIVE' AND t.expires_at > clock.now) AS active \
     FROM queue_admission a, clock";

#[derive(Debug, QueryableByName)]
struct CursorRow {
    #[diesel(sql_type = BigInt)]
    admitted_through: i64,
    #[diesel(sql_type = Nullable<Timestamptz>)]
    last_admission_at: Option<OffsetDateTime>,
}

impl CursorRow {
    fn into_domain(self) -> QueueCursor {
        QueueCursor {
            admitted_through: self.admitted_through,
            last_admission_at: self.last_admission_at,
            epoch: 0,
            draw: None,
        }
    }
}

#[derive(Debug, QueryableByName)]
struct TokenWithCursor {
    #[diesel(embed)]
    token: TokenRow,
    #[diesel(embed)]
    cursor: CursorRow,
}

/// What admission and stats read.
#[derive(Debug, QueryableByName)]
struct QueueRead {
    #[diesel(sql_type = Timestamptz)]
    now: OffsetDateTime,
    #[diesel(embed)]
    cursor: CursorRow,
    #[diesel(sql_type = BigInt)]
    issued_through: i64,
    #[diesel(sql_type = BigInt)]
    active: i64,
}

#[derive(Debug, QueryableByName)]
struct Count {
    #[diesel(sql_type = BigInt)]
    n: i64,
}

fn count(n: i64) -> u64 {
    u64::try_from(n).unwrap_or(0)
}

impl QueueStore for PgStore {
    fn issue(&self, user: UserId, value: TokenValue, now: OffsetDateTime) -> Result<IssueOutcome, StoreError> {
        self.issuer.issue(&self.pool, self.limits, user, value, now)
    }

    fn find(&self, value: &TokenValue) -> Result<Option<QueueToken>, StoreError> {
        let row: Option<TokenRow> =
            self.autocommit(|c| prepared(FIND_TOKEN).bind::<Text, _>(value.as_str()).get_result(c).optional())?;
        row.map(TokenRow::into_domain).transpose()
    }

    fn find_with_cursor(&self, value: &TokenValue) -> Result<Option<(QueueToken, QueueCursor)>, StoreError> {
        let row: Option<TokenWithCursor> =
            self.autocommit(|c| prepared(FIND_WITH_CURSOR).bind::<Text, _>(value.as_str()).get_result(c).optional())?;
        row.map(|r| Ok((r.token.into_domain()?, r.cursor.into_domain()))).transpose()
    }

    fn cursor(&self) -> Result<QueueCursor, StoreError> {
        self.autocommit(|c| prepared(CURSOR).get_result::<CursorRow>(c)).map(CursorRow::into_domain)
    }

    fn admit(&self, policy: &AdmissionPolicy) -> Result<AdmissionOutcome, StoreError> {
        let started = Instant::now();
        let store_now = self.store_now();
        let outcome = self.transaction(ADMISSION_BEGIN, started, |tx| {
            // Read after the lock, in a statement of its own: the snapshot sees the last tick's
            // commit, and the server's clock is read after any wait for the lock.
            let read: QueueRead = prepared(ADMIT_READ)
                .bind::<Nullable<Timestamptz>, _>(store_now)
                .bind::<Bool, _>(policy.max_active.is_some())
                .get_result(tx.conn()?)?;
            let now = read.now;
            let cursor = read.cursor.into_domain();
            if !policy.is_due(cursor.last_admission_at, now) {
                let wait = policy.next_admission_at(cursor.last_admission_at, now) - now;
                return Ok(AdmissionOutcome::NotDue { wait });
            }
            let waiting = count(read.issued_through - cursor.admitted_through);
            let n = policy.quota(count(read.active), waiting);
            if n == 0 {
                return Ok(AdmissionOutcome::Admitted(0));
            }
            let through = cursor.admitted_through + i64::try_from(n).unwrap_or(i64::MAX);
            let changed: Count = prepared(ADMIT_WRITE)
                .bind::<Timestamptz, _>(now)
                .bind::<Timestamptz, _>(policy.expiry_for(now))
                .bind::<BigInt, _>(cursor.admitted_through)
                .bind::<BigInt, _>(through)
                .get_result(tx.conn()?)?;
            if count(changed.n) != n {
                // The cursor would move past tokens that were not activated.
                return Err(Fail::Store(StoreError::Internal(format!(
                    "admission expected {n} WAITING tokens above {} and found {}",
                    cursor.admitted_through, changed.n
                ))));
            }
            Ok::<_, Fail<()>>(AdmissionOutcome::Admitted(n))
        })?;
        outcome.map_err(|()| StoreError::Internal("admission refused itself".into()))
    }

    fn expire_tokens(&self, limit: u32) -> Result<u64, StoreError> {
        let store_now = self.store_now();
        let n = self.autocommit(|c| {
            prepared(EXPIRE_TOKENS)
                .bind::<Nullable<Timestamptz>, _>(store_now)
                .bind::<BigInt, _>(i64::from(limit))
                .execute(c)
        })?;
        Ok(n as u64)
    }

    fn use_up(&self, value: &TokenValue, at: OffsetDateTime) -> Result<(), StoreError> {
        self.autocommit(|c| prepared(USE_UP).bind::<Text, _>(value.as_str()).bind::<Timestamptz, _>(at).execute(c))
            .map(|_| ())
    }

    fn stats(&self) -> Result<QueueStats, StoreError> {
        let store_now = self.store_now();
        let read: QueueRead =
            self.autocommit(|c| prepared(STATS).bind::<Nullable<Timestamptz>, _>(store_now).get_result(c))?;
        let cursor = read.cursor.into_domain();
        Ok(QueueStats {
            waiting: count(read.issued_through - cursor.admitted_through),
            active: count(read.active),
            issued_through: read.issued_through,
            cursor,
            now: read.now,
            abandoned: 0,
        })
    }

    fn ping(&self) -> Result<(), StoreError> {
        PgStore::ping(self)
    }
}
