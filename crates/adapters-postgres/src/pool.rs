//! Connection settings, the r2d2 pool, and creating the database named in `DATABASE_URL`.

use std::time::Duration;

use anyhow::{bail, Context as _};
use diesel::connection::SimpleConnection as _;
use diesel::prelude::*;
use diesel::r2d2::{CustomizeConnection, HandleError, ManageConnection, Pool, R2D2Connection as _};
use diesel::sql_types::Text;

use crate::error::{loses_connection, TxError};

/// The pool type every port borrows from.
pub(crate) type PgPool = Pool<Manager>;

/// A pooled connection that remembers whether a statement on it failed because the connection
/// itself is gone.
///
/// The pool does not ping on checkout (a `SELECT 1` round trip on every request), and diesel's
/// own `is_broken` only looks at the transaction state, so a connection whose socket died
/// (database restarted, network cut) would otherwise go back to the pool and fail every request
/// that gets it. Every statement the adapter runs goes through [`PgConn::run`], which sets the
/// flag; [`Manager::has_broken`] then makes r2d2 discard the connection when it is returned, so
/// each dead connection fails one request and the pool opens a fresh one.
pub(crate) struct PgConn {
    conn: PgConnection,
    broken: bool,
}

/// An error that may carry a diesel error telling that the connection is gone.
pub(crate) trait MaybeLost {
    /// Whether the connection this error came from is unusable.
    fn loses_connection(&self) -> bool;
}

impl MaybeLost for diesel::result::Error {
    fn loses_connection(&self) -> bool {
        loses_connection(self)
    }
}

impl MaybeLost for anyhow::Error {
    fn loses_connection(&self) -> bool {
        self.downcast_ref::<diesel::result::Error>().is_some_and(loses_connection)
    }
}

impl<E> MaybeLost for TxError<E> {
    fn loses_connection(&self) -> bool {
        matches!(self, TxError::Db(e) if loses_connection(e))
    }
}

impl PgConn {
    /// Runs `f` on the connection and marks the connection broken if `f` failed because the
    /// connection is gone.
    pub(crate) fn run<T, E: MaybeLost>(&mut self, f: impl FnOnce(&mut PgConnection) -> Result<T, E>) -> Result<T, E> {
        let result = f(&mut self.conn);
        if result.as_ref().is_err_and(MaybeLost::loses_connection) {
            self.broken = true;
        }
        result
    }

    /// Marks the connection broken (for failures that were mapped inside `run`'s closure and
    /// no longer carry the diesel error).
    pub(crate) fn mark_broken(&mut self) {
        self.broken = true;
    }
}

/// Opens `PgConnection`s wrapped in [`PgConn`] and tells r2d2 to drop the broken ones.
#[derive(Debug, Clone)]
pub(crate) struct Manager {
    url: String,
}

impl ManageConnection for Manager {
    type Connection = PgConn;
    type Error = diesel::r2d2::Error;

    fn connect(&self) -> Result<PgConn, Self::Error> {
        PgConnection::establish(&self.url)
            .map(|conn| PgConn { conn, broken: false })
            .map_err(diesel::r2d2::Error::ConnectionError)
    }

    /// Only used if checkout tests are turned on (they are not, see [`build_pool`]).
    fn is_valid(&self, conn: &mut PgConn) -> Result<(), Self::Error> {
        conn.run(|c| c.batch_execute("SELECT 1")).map_err(diesel::r2d2::Error::QueryError)
    }

    /// Called when a connection returns to the pool: a connection that lost its server, or
    /// whose transaction could not be closed (diesel's check), or that was in use by a
    /// panicking thread, is dropped instead of reused.
    fn has_broken(&self, conn: &mut PgConn) -> bool {
        conn.broken || std::thread::panicking() || conn.conn.is_broken()
    }
}

/// How to reach PostgreSQL.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PgConfig {
    /// `postgres://user@host:port/db?...`. `connect_timeout` is added unless present.
    pub url: String,
    /// Most connections the pool opens.
    pub pool_size: u32,
    /// How long a caller waits for a pooled connection (and a new connection for its TCP and
    /// start-up handshake) before getting `StoreError::Unavailable`.
    pub connect_timeout: Duration,
    /// Server-side cap on any one statement, set on every connection.
    pub statement_timeout: Duration,
}

impl PgConfig {
    /// Defaults sized for the 2-core target:
    /// - 10 connections: PostgreSQL's rule of thumb is about 2 × cores plus a few for I/O
    ///   waits; every statement here is a short indexed one, so more connections would only
    ///   queue inside the server instead of in the pool, and 10 leaves room under the default
    ///   `max_connections` for a second instance and `psql`.
    /// - 2 s to get a connection: the contract answers "database unreachable" within 5 s,
    ///   which leaves time for the HTTP layer around it.
    /// - 5 s per statement: nothing we run should take a tenth of that; a statement stuck
    ///   behind a lock must not hold a connection forever.
    #[must_use]
    pub fn new(url: impl Into<String>) -> Self {
        Self {
            url: url.into(),
            pool_size: 10,
            connect_timeout: Duration::from_secs(2),
            statement_timeout: Duration::from_secs(5),
        }
    }

    /// The URL with libpq's `connect_timeout` (whole seconds, at least 2, libpq's own minimum)
    /// so a black-holed host cannot stall a connection attempt for the kernel's TCP timeout.
    #[must_use]
    pub fn effective_url(&self) -> String {
        with_connect_timeout(&self.url, self.connect_timeout)
    }
}

pub(crate) fn with_connect_timeout(url: &str, timeout: Duration) -> String {
    if url.contains("connect_timeout=") {
        return url.to_owned();
    }
    let secs = timeout.as_secs().max(2);
    let sep = if url.contains('?') { '&' } else { '?' };
    format!("{url}{sep}connect_timeout={secs}")
}

/// Runs on every new connection: per-session settings that must hold for every statement.
#[derive(Debug, Clone, Copy)]
struct SessionSetup {
    statement_timeout_ms: u128,
}

impl CustomizeConnection<PgConn, diesel::r2d2::Error> for SessionSetup {
    fn on_acquire(&self, conn: &mut PgConn) -> Result<(), diesel::r2d2::Error> {
        let conn = &mut conn.conn;
        // Timestamps travel as binary timestamptz, so the session time zone cannot change them;
        // UTC only keeps `psql`-style text output and ad-hoc debugging unsurprising.
        conn.batch_execute(&format!(
            "SET statement_timeout = {}; SET TIME ZONE 'UTC'; SET application_name = 'concert'",
            self.statement_timeout_ms.max(1)
        ))
        .map_err(diesel::r2d2::Error::QueryError)
    }
}

/// Connection failures while the pool refills in the background are expected when the
/// database is down; they are reported to callers as `Unavailable`, so here they are only
/// traced at debug level instead of being logged once per retry.
#[derive(Debug, Clone, Copy)]
struct TraceErrors;

impl HandleError<diesel::r2d2::Error> for TraceErrors {
    fn handle_error(&self, error: diesel::r2d2::Error) {
        tracing::debug!(%error, "postgres pool could not open a connection");
    }
}

/// Builds the pool without waiting for any connection: a database that is down at start-up
/// (or goes away later) makes checkouts fail with `Unavailable` after `connect_timeout`, and
/// the pool reconnects by itself once it is back.
pub(crate) fn build_pool(cfg: &PgConfig) -> PgPool {
    let size = cfg.pool_size.max(1);
    let manager = Manager { url: cfg.effective_url() };
    Pool::builder()
        .max_size(size)
        // No background warming: every connection is opened by a caller that waits for it.
        // r2d2 opens `min_idle` connections on its own threads; a short-lived process (`concert
        // seed-demo`, `check-invariants`) then exited in the middle of those TLS handshakes while
        // OpenSSL's atexit handler tore its state down, and crashed with SIGSEGV (8 of 60
        // `seed-demo` runs). Connections opened on demand stay idle in the pool for reuse.
        .min_idle(Some(0))
        .connection_timeout(cfg.connect_timeout.max(Duration::from_millis(10)))
        // No `SELECT 1` per checkout: that is a round trip on every request, and it only saves
        // one failed request per stale connection after the server restarts. `Manager`
        // discards a connection as soon as a statement on it finds it dead.
        .test_on_check_out(false)
        .connection_customizer(Box::new(SessionSetup { statement_timeout_ms: cfg.statement_timeout.as_millis() }))
        .error_handler(Box::new(TraceErrors))
        .build_unchecked(manager)
}

/// The database name and the URL of the `postgres` maintenance database on the same server.
pub(crate) fn split_url(url: &str) -> anyhow::Result<(String, String)> {
    let Some(scheme_end) = url.find("://") else { bail!("DATABASE_URL must be a postgres:// URL") };
    let (base, query) = match url.find('?') {
        Some(q) => (&url[..q], &url[q..]),
        None => (url, ""),
    };
    let after_scheme = scheme_end + 3;
    let Some(slash) = base.get(after_scheme..).and_then(|rest| rest.find('/')).map(|i| i + after_scheme) else {
        bail!("DATABASE_URL names no database")
    };
    let name = &base[slash + 1..];
    if name.is_empty() {
        bail!("DATABASE_URL names no database");
    }
    Ok((name.to_owned(), format!("{}/postgres{query}", &base[..slash])))
}

/// Double-quotes an identifier for SQL that cannot take bind parameters (`CREATE DATABASE`).
pub(crate) fn quote_ident(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}

#[derive(QueryableByName)]
struct Exists {
    #[diesel(sql_type = diesel::sql_types::Bool)]
    exists: bool,
}

pub(crate) fn database_exists(admin: &mut PgConnection, name: &str) -> QueryResult<bool> {
    diesel::sql_query("SELECT EXISTS (SELECT 1 FROM pg_database WHERE datname = $1) AS exists")
        .bind::<Text, _>(name)
        .get_result::<Exists>(admin)
        .map(|r| r.exists)
}

/// Creates the database named in `url` unless it exists, connecting to the `postgres` database
/// of the same server. Safe to run from several instances at once.
///
/// # Errors
/// When the server cannot be reached or refuses to create the database.
pub fn ensure_database(url: &str) -> anyhow::Result<()> {
    let (name, admin_url) = split_url(url)?;
    let admin_url = with_connect_timeout(&admin_url, Duration::from_secs(5));
    let mut admin = PgConnection::establish(&admin_url).context("connecting to the `postgres` database")?;
    if database_exists(&mut admin, &name)? {
        return Ok(());
    }
    // From template0: CREATE DATABASE fails while anyone is connected to its template, and
    // nobody can connect to template0 (template1, the default, may have visitors).
    match diesel::sql_query(format!("CREATE DATABASE {} TEMPLATE template0", quote_ident(&name))).execute(&mut admin) {
        Ok(_) => {
            tracing::info!(database = %name, "created database");
            Ok(())
        }
        // Another instance created it between our check and our CREATE.
        Err(diesel::result::Error::DatabaseError(_, info)) if info.message().contains("already exists") => Ok(()),
        Err(e) => Err(e).with_context(|| format!("creating database {name}")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn split_url_finds_the_name_and_keeps_the_query() {
        let (name, admin) = split_url("postgres://u:p@h:5432/concert?sslmode=disable").unwrap();
        assert_eq!(name, "concert");
        assert_eq!(admin, "postgres://u:p@h:5432/postgres?sslmode=disable");
        assert!(split_url("postgres://h:5432").is_err());
        assert!(split_url("postgres://h:5432/").is_err());
    }

    #[test]
    fn connect_timeout_is_added_once() {
        let d = Duration::from_secs(1);
        assert_eq!(with_connect_timeout("postgres://h/db", d), "postgres://h/db?connect_timeout=2");
        assert_eq!(with_connect_timeout("postgres://h/db?a=b", d), "postgres://h/db?a=b&connect_timeout=2");
        assert_eq!(with_connect_timeout("postgres://h/db?connect_timeout=9", d), "postgres://h/db?connect_timeout=9");
    }

    #[test]
    fn identifiers_are_quoted() {
        assert_eq!(quote_ident("a\"b"), "\"a\"\"b\"");
    }
}
