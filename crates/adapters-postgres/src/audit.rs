//! The operator log (`operator_log`): lines written with the change they record, by the
//! statement or in the transaction that makes it, and read newest first.

use diesel::prelude::*;
use diesel::sql_types::{BigInt, Nullable, Text, Timestamptz};
use domain::audit::{AuditAction, AuditEntry, OperatorAction};
use domain::ports::{AuditStore, StoreError};
use time::OffsetDateTime;

use crate::error::corrupt;
use crate::sql::prepared;
use crate::PgStore;

/// Appends one line (`$1..$6`: at, actor, action, target, before, after).
pub(crate) const LOG: &str =
    "INSERT INTO operator_log (at, actor, action, target, before, after) VALUES ($1, $2, $3, $4, $5, $6)";

/// At most `$2` lines below `$1` (all when NULL), newest first.
const PAGE: &str = "SELECT seq, at, actor, action, target, before, after FROM operator_log \
     WHERE $1::bigint IS NULL OR seq < $1 ORDER BY seq DESC LIMIT $2";

#[derive(Debug, QueryableByName)]
struct LogRow {
    #[diesel(sql_type = BigInt)]
    seq: i64,
    #[diesel(sql_type = Timestamptz)]
    at: OffsetDateTime,
    #[diesel(sql_type = Text)]
    actor: String,
    #[diesel(sql_type = Text)]
    action: String,
    #[diesel(sql_type = Text)]
    target: String,
    #[diesel(sql_type = Nullable<Text>)]
    before: Option<String>,
    #[diesel(sql_type = Text)]
    after: String,
}

/// Binds a line as the parameters `$first..$first + 5` of a statement that writes it.
macro_rules! bind_line {
    ($query:expr, $line:expr) => {
        $query
            .bind::<diesel::sql_types::Nullable<diesel::sql_types::Timestamptz>, _>($line.map(|l| l.at))
            .bind::<diesel::sql_types::Nullable<diesel::sql_types::Text>, _>($line.map(|l| l.actor.as_str()))
            .bind::<diesel::sql_types::Nullable<diesel::sql_types::Text>, _>($line.map(|l| l.action.as_str()))
            .bind::<diesel::sql_types::Nullable<diesel::sql_types::Text>, _>($line.map(|l| l.target.as_str()))
            .bind::<diesel::sql_types::Nullable<diesel::sql_types::Text>, _>($line.and_then(|l| l.before.as_deref()))
            .bind::<diesel::sql_types::Nullable<diesel::sql_types::Text>, _>($line.map(|l| l.after.as_str()))
    };
}
pub(crate) use bind_line;

/// Writes `line` with a statement of its own, inside the caller's transaction.
pub(crate) fn write(conn: &mut PgConnection, line: &OperatorAction) -> QueryResult<usize> {
    prepared(LOG)
        .bind::<Timestamptz, _>(line.at)
        .bind::<Text, _>(line.actor.as_str())
        .bind::<Text, _>(line.action.as_str())
        .bind::<Text, _>(line.target.as_str())
        .bind::<Nullable<Text>, _>(line.before.as_deref())
        .bind::<Text, _>(line.after.as_str())
        .execute(conn)
}

impl AuditStore for PgStore {
    fn audit_log(&self, before: Option<i64>, limit: u32) -> Result<Vec<AuditEntry>, StoreError> {
        let rows: Vec<LogRow> = self.autocommit(|c| {
            prepared(PAGE).bind::<Nullable<BigInt>, _>(before).bind::<BigInt, _>(i64::from(limit)).load(c)
        })?;
        rows.into_iter()
            .map(|r| {
                let action = AuditAction::parse(&r.action).ok_or_else(|| corrupt("operator_log.action"))?;
                let line = OperatorAction {
                    at: r.at,
                    actor: r.actor,
                    action,
                    target: r.target,
                    before: r.before,
                    after: r.after,
                };
                Ok(AuditEntry { seq: r.seq, action: line })
            })
            .collect()
    }
}
