//! The r2d2 pool, the connections in it, and creating the database named in `DATABASE_URL`.

use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use diesel::connection::{Instrumentation, InstrumentationEvent};
use diesel::prelude::*;
use diesel::r2d2::{HandleError, ManageConnection, Pool, R2D2Connection as _};
use diesel::sql_types::Text;
use thiserror::Error;

use crate::config::{ConfigError, DatabaseUrl, PgConfig};

/// The pool type every port borrows from.
pub(crate) type PgPool = Pool<Manager>;

/// How long the statement that failed last on a connection ran, recorded by diesel's
/// instrumentation hook (the error classification needs it, see `error`).
#[derive(Debug, Default)]
struct Timing {
    started: Option<Instant>,
    failed_after: Option<Duration>,
}

/// The instrumentation installed on every pooled connection.
struct StatementTimer(Arc<Mutex<Timing>>);

impl Instrumentation for StatementTimer {
    fn on_connection_event(&mut self, event: InstrumentationEvent<'_>) {
        let mut t = self.0.lock().unwrap_or_else(PoisonError::into_inner);
        match event {
            InstrumentationEvent::StartQuery { .. } => {
                t.started = Some(Instant::now());
                t.failed_after = None;
            }
            InstrumentationEvent::FinishQuery { error: Some(_), .. } => {
                t.failed_after = t.started.map(|s| s.elapsed());
            }
            _ => {}
        }
    }
}

/// A pooled connection that remembers whether it must leave the pool, and how long its last
/// failed statement ran.
///
/// The pool does not ping on checkout (a `SELECT 1` round trip on every call), and diesel's
/// own `is_broken` only looks at the transaction state, so a connection whose socket died
/// would otherwise go back to the pool and fail every call that gets it. The error
/// classification sets `broken` when it finds the connection gone; [`Manager::has_broken`]
/// then makes r2d2 discard it, so each dead connection fails one call and the pool opens a
/// fresh one.
pub(crate) struct PgConn {
    pub(crate) conn: PgConnection,
    pub(crate) broken: bool,
    timing: Arc<Mutex<Timing>>,
}

impl PgConn {
    /// How long the last statement ran, if it failed (`None` once another statement started).
    pub(crate) fn failed_after(&self) -> Option<Duration> {
        self.timing.lock().unwrap_or_else(PoisonError::into_inner).failed_after
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
        let mut conn = PgConnection::establish(&self.url).map_err(diesel::r2d2::Error::ConnectionError)?;
        let timing = Arc::new(Mutex::new(Timing::default()));
        conn.set_instrumentation(StatementTimer(timing.clone()));
        Ok(PgConn { conn, broken: false, timing })
    }

    /// Only used if checkout tests are turned on (they are not, see [`build_pool`]).
    fn is_valid(&self, conn: &mut PgConn) -> Result<(), Self::Error> {
        use diesel::connection::SimpleConnection as _;
        conn.conn.batch_execute("SELECT 1").map_err(diesel::r2d2::Error::QueryError)
    }

    /// Called when a connection returns to the pool: a connection found dead, or whose
    /// transaction could not be closed (diesel's check), or that was in use by a panicking
    /// thread, is dropped instead of reused.
    fn has_broken(&self, conn: &mut PgConn) -> bool {
        conn.broken || std::thread::panicking() || conn.conn.is_broken()
    }
}

/// Connection failures while the database is down are reported to callers as `Unavailable`;
/// here they are only traced at debug level instead of logged once per attempt.
#[derive(Debug, Clone, Copy)]
struct TraceErrors;

impl HandleError<diesel::r2d2::Error> for TraceErrors {
    fn handle_error(&self, error: diesel::r2d2::Error) {
        tracing::debug!(%error, "postgres pool could not open a connection");
    }
}

/// Builds the pool without opening any connection: a database that is down at start-up (or
/// goes away later) makes checkouts fail with `Unavailable` after `checkout_timeout`, and the
/// pool reconnects by itself once it is back.
pub(crate) fn build_pool(cfg: &PgConfig) -> Result<PgPool, ConfigError> {
    let manager = Manager { url: cfg.pool_url()? };
    Ok(Pool::builder()
        .max_size(cfg.pool_size.max(1))
        // No background warming: every connection is opened by a caller that waits for it.
        // r2d2 opens `min_idle` connections on its own threads; a short-lived process (`concert
        // check-invariants`) then exited in the middle of those TLS handshakes while OpenSSL's
        // atexit handler tore its state down, and crashed. Connections opened on demand stay
        // idle in the pool for reuse.
        .min_idle(Some(0))
        .connection_timeout(cfg.checkout_timeout.max(Duration::from_millis(10)))
        // No `SELECT 1` per checkout: that is a round trip on every call, and it only saves one
        // failed call per stale connection after the server restarts (see `PgConn`).
        .test_on_check_out(false)
        .error_handler(Box::new(TraceErrors))
        .build_unchecked(manager))
}

/// Why the database named in `DATABASE_URL` could not be made sure of.
#[derive(Debug, Error)]
pub enum EnsureDatabaseError {
    /// The URL is unusable.
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// The server's `postgres` database could not be reached.
    #[error("connecting to the `postgres` database of the server in DATABASE_URL")]
    Connect(#[source] diesel::ConnectionError),
    /// The server refused to create the database, or failed.
    #[error("creating database {name}")]
    Create {
        /// The database.
        name: String,
        /// What the server said.
        #[source]
        source: diesel::result::Error,
    },
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

/// Creates the database named in `cfg.url` unless it exists, connecting to the `postgres`
/// database of the same server. Safe to run from several instances at once.
///
/// # Errors
/// [`EnsureDatabaseError`] when the URL is unusable, the server cannot be reached, or it
/// refuses to create the database.
pub fn ensure_database(cfg: &PgConfig) -> Result<(), EnsureDatabaseError> {
    let db = DatabaseUrl::parse(&cfg.maintenance_url()?)?;
    let name = db.name().to_owned();
    let mut admin = PgConnection::establish(&db.maintenance()).map_err(EnsureDatabaseError::Connect)?;
    let create_err = |source| EnsureDatabaseError::Create { name: name.clone(), source };
    if database_exists(&mut admin, &name).map_err(create_err)? {
        return Ok(());
    }
    // From template0: CREATE DATABASE fails while anyone is connected to its template, and
    // nobody can connect to template0 (template1, the default, may have visitors).
    let created =
        diesel::sql_query(format!("CREATE DATABASE {} TEMPLATE template0", quote_ident(&name))).execute(&mut admin);
    match created {
        Ok(_) => {
            tracing::info!(database = %name, "created database");
            Ok(())
        }
        // Another instance may have created it between our check and our CREATE; asking again
        // tells that apart from a real refusal without reading the server's message text.
        Err(e) => match database_exists(&mut admin, &name) {
            Ok(true) => Ok(()),
            _ => Err(create_err(e)),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn identifiers_are_quoted() {
        assert_eq!(quote_ident("a\"b"), "\"a\"\"b\"");
    }
}
