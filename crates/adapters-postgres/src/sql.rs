//! Raw SQL that diesel prepares once per connection and then reuses.
//!
//! diesel caches every statement it builds with its query DSL (a named prepared statement per
//! connection), but never a `sql_query`: that one is sent as an unnamed statement which
//! PostgreSQL parses and plans on every execution. The statements whose atomicity lives in the
//! SQL (`ON CONFLICT`, data-modifying CTEs, `FOR UPDATE`, literal statuses that partial indexes
//! need) cannot be written in the DSL, so [`prepared`] gives them the DSL's caching: a query
//! fragment that never declares itself unsafe to cache is cached by its SQL text and bind
//! types. The text is a `&'static str`, so the cache holds one entry per call site.
//!
//! Placeholders are written `$1`, `$2`, … as in `sql_query`, in any order and any number of
//! times; each occurrence is sent as a bind of its own (what diesel's own builder does), so the
//! SQL must not contain a `$` anywhere else (no dollar quoting).

use std::marker::PhantomData;

use diesel::pg::Pg;
use diesel::query_builder::{AstPass, Query, QueryFragment, QueryId};
use diesel::query_dsl::RunQueryDsl;
use diesel::serialize::ToSql;
use diesel::sql_types::{HasSqlType, Untyped};
use diesel::QueryResult;

/// A raw statement with its binds, loaded by name like a `sql_query` (`QueryableByName`).
#[derive(Debug, Clone, Copy)]
#[must_use = "a statement only runs when executed or loaded"]
pub(crate) struct Prepared<B> {
    sql: &'static str,
    binds: B,
}

/// Starts a cached raw statement.
pub(crate) fn prepared(sql: &'static str) -> Prepared<()> {
    Prepared { sql, binds: () }
}

impl<B: Binds> Prepared<B> {
    /// Adds the value of the next placeholder (`$1` first), sent as SQL type `ST`.
    pub(crate) fn bind<ST, V>(self, value: V) -> Prepared<(B, Bound<ST, V>)> {
        Prepared { sql: self.sql, binds: (self.binds, Bound { value, sql_type: PhantomData }) }
    }
}

/// One bound value and its SQL type.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Bound<ST, V> {
    value: V,
    sql_type: PhantomData<ST>,
}

/// A list of binds, addressable by position (`$n` is position `n - 1`).
pub(crate) trait Binds {
    /// How many.
    const LEN: usize;

    /// Pushes the bind at `index` as the next parameter of the statement.
    ///
    /// # Errors
    /// When `index` is out of range or the value cannot be serialised.
    fn push<'b>(&'b self, index: usize, out: &mut AstPass<'_, 'b, Pg>) -> QueryResult<()>;
}

impl Binds for () {
    const LEN: usize = 0;

    fn push<'b>(&'b self, index: usize, _: &mut AstPass<'_, 'b, Pg>) -> QueryResult<()> {
        Err(diesel::result::Error::QueryBuilderError(format!("placeholder ${} has no bind", index + 1).into()))
    }
}

impl<B, ST, V> Binds for (B, Bound<ST, V>)
where
    B: Binds,
    Pg: HasSqlType<ST>,
    V: ToSql<ST, Pg>,
{
    const LEN: usize = B::LEN + 1;

    fn push<'b>(&'b self, index: usize, out: &mut AstPass<'_, 'b, Pg>) -> QueryResult<()> {
        if index == B::LEN {
            out.push_bind_param::<ST, V>(&self.1.value)
        } else {
            self.0.push(index, out)
        }
    }
}

impl<B: Binds> QueryFragment<Pg> for Prepared<B> {
    fn walk_ast<'b>(&'b self, mut out: AstPass<'_, 'b, Pg>) -> QueryResult<()> {
        let mut rest = self.sql;
        while let Some(at) = rest.find('$') {
            out.push_sql(&rest[..at]);
            let digits = rest[at + 1..].bytes().take_while(u8::is_ascii_digit).count();
            let number: usize = rest[at + 1..at + 1 + digits].parse().map_err(|_| {
                diesel::result::Error::QueryBuilderError(format!("bad placeholder in {:?}", self.sql).into())
            })?;
            self.binds.push(number.wrapping_sub(1), &mut out)?;
            rest = &rest[at + 1 + digits..];
        }
        out.push_sql(rest);
        Ok(())
    }
}

impl<B> QueryId for Prepared<B> {
    type QueryId = ();
    // Not a static id: diesel then keys its statement cache by the SQL text and bind types.
    const HAS_STATIC_QUERY_ID: bool = false;
}

impl<B> Query for Prepared<B> {
    type SqlType = Untyped;
}

impl<B, Conn> RunQueryDsl<Conn> for Prepared<B> {}
