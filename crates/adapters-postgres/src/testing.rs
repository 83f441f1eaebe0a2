//! Test support: every test gets its own database, cloned from a template that holds the
//! migrated schema, so tests run in parallel without seeing each other's rows and a clone
//! costs a file copy instead of a migration run.
//!
//! - The template is named after a fingerprint of `migrations/` (computed by `build.rs`), so a
//!   changed migration set builds a new one. It is built once per server under a
//!   session-level advisory lock held on a dedicated admin connection (concurrent test binaries
//!   wait for the first), under a temporary name that is renamed when complete, so a crash
//!   mid-build never leaves a half-migrated template.
//! - Test databases are named `concert_test_<pid>_<unix secs>_<n>` and dropped (`WITH
//!   (FORCE)`) when the [`TestDatabase`] is dropped. Leftovers of crashed runs (a pid that is no
//!   longer running, or older than an hour) are dropped when the template is first checked.
//! - The server is `TEST_DATABASE_SERVER` (a URL without database name), default
//!   `postgres://postgres@127.0.0.1:5432`.

use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Mutex, PoisonError};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use diesel::prelude::*;
use diesel::sql_types::{BigInt, Text};
use diesel_migrations::MigrationHarness as _;
use thiserror::Error;

use crate::pool::{database_exists, quote_ident};
use crate::{ConfigError, PgConfig, PgStore, MIGRATIONS};

/// Why a test database could not be made.
#[derive(Debug, Error)]
pub enum TestDbError {
    /// The test server could not be reached.
    #[error("connecting to the test server ({TEST_SERVER_VAR})")]
    Connect(#[from] diesel::ConnectionError),
    /// A statement failed.
    #[error("preparing a test database")]
    Query(#[from] diesel::result::Error),
    /// Migrating the template failed.
    #[error("migrating the test template: {0}")]
    Migrate(String),
    /// The store could not be built.
    #[error(transparent)]
    Config(#[from] ConfigError),
}

/// The variable naming the test server.
const TEST_SERVER_VAR: &str = "TEST_DATABASE_SERVER";

/// Session advisory lock key guarding template builds and leftover clean-up.
const TEMPLATE_LOCK: i64 = 0x636f_6e63_6572_7402;
const PREFIX: &str = "concert_test_";
const MAX_AGE: Duration = Duration::from_secs(3600);

/// The template name for the compiled-in migration set.
fn template_name() -> String {
    format!("{PREFIX}tpl_{}", env!("CONCERT_MIGRATIONS_HASH"))
}

/// The server every test database lives on.
#[must_use]
pub fn server_url() -> String {
    std::env::var(TEST_SERVER_VAR)
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432".into())
        .trim_end_matches('/')
        .to_owned()
}

fn db_url(name: &str) -> String {
    format!("{}/{name}", server_url())
}

fn admin() -> Result<PgConnection, TestDbError> {
    Ok(PgConnection::establish(&db_url("postgres"))?)
}

fn now_secs() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0)
}

/// Whether a process with this pid runs on this host.
fn pid_alive(pid: u32) -> bool {
    pid == std::process::id() || std::path::Path::new(&format!("/proc/{pid}")).exists()
}

#[derive(QueryableByName)]
struct Name {
    #[diesel(sql_type = Text)]
    datname: String,
}

fn drop_database(admin: &mut PgConnection, name: &str) -> QueryResult<usize> {
    diesel::sql_query(format!("DROP DATABASE IF EXISTS {} WITH (FORCE)", quote_ident(name))).execute(admin)
}

/// Drops test databases of dead or hour-old runs and half-built templates (templates of other
/// migration sets are kept: another branch's run may be cloning them). Runs under the template lock.
fn clean_leftovers(admin: &mut PgConnection) -> Result<(), TestDbError> {
    let names: Vec<Name> = diesel::sql_query("SELECT datname FROM pg_database WHERE starts_with(datname, $1)")
        .bind::<Text, _>(PREFIX)
        .load(admin)?;
    for Name { datname } in names {
        let rest = &datname[PREFIX.len()..];
        let stale = if rest.starts_with("tpl_") {
            // A template of another migration set may be in use right now by a test run of
            // another branch on this server (clones of it fail once it is gone): kept. Templates
            // are small, and one per migration set.
            false
        } else if let Some(pid) = rest.strip_prefix("build_").and_then(|r| r.split('_').next()) {
            pid.parse().map_or(true, |pid: u32| !pid_alive(pid))
        } else {
            let mut parts = rest.split('_');
            let pid = parts.next().and_then(|p| p.parse::<u32>().ok());
            let born = parts.next().and_then(|s| s.parse::<u64>().ok());
            match (pid, born) {
                (Some(pid), Some(born)) => !pid_alive(pid) || now_secs().saturating_sub(born) > MAX_AGE.as_secs(),
                _ => false,
            }
        };
        if stale {
            drop_database(admin, &datname)?;
        }
    }
    Ok(())
}

/// Builds the template unless it exists; the result is remembered for the process.
fn ensure_template() -> Result<String, TestDbError> {
    static DONE: Mutex<Option<String>> = Mutex::new(None);
    let mut done = DONE.lock().unwrap_or_else(PoisonError::into_inner);
    if let Some(name) = done.as_ref() {
        return Ok(name.clone());
    }
    let name = template_name();
    let mut admin = admin()?;
    // A dedicated, unpooled connection: the session lock ends with it at the latest.
    diesel::sql_query("SELECT pg_advisory_lock($1)").bind::<BigInt, _>(TEMPLATE_LOCK).execute(&mut admin)?;
    let built = (|| -> Result<(), TestDbError> {
        clean_leftovers(&mut admin)?;
        if database_exists(&mut admin, &name)? {
            return Ok(());
        }
        let build = format!("{PREFIX}build_{}_{}", std::process::id(), now_secs());
        drop_database(&mut admin, &build)?;
        diesel::sql_query(format!("CREATE DATABASE {} TEMPLATE template0", quote_ident(&build))).execute(&mut admin)?;
        {
            let mut conn = PgConnection::establish(&db_url(&build))?;
            conn.run_pending_migrations(MIGRATIONS).map_err(|e| TestDbError::Migrate(e.to_string()))?;
        }
        diesel::sql_query(format!("ALTER DATABASE {} RENAME TO {}", quote_ident(&build), quote_ident(&name)))
            .execute(&mut admin)?;
        // Nobody may connect to it: a connection would make every clone fail.
        diesel::sql_query(format!("ALTER DATABASE {} WITH ALLOW_CONNECTIONS false", quote_ident(&name)))
            .execute(&mut admin)?;
        Ok(())
    })();
    let _ = diesel::sql_query("SELECT pg_advisory_unlock($1)").bind::<BigInt, _>(TEMPLATE_LOCK).execute(&mut admin);
    built?;
    *done = Some(name.clone());
    Ok(name)
}

/// A migrated database of its own, dropped on drop.
#[derive(Debug)]
pub struct TestDatabase {
    name: String,
}

impl TestDatabase {
    /// Clones a fresh database from the migrated template.
    ///
    /// # Errors
    /// When the server cannot be reached or the template cannot be built.
    pub fn create() -> Result<Self, TestDbError> {
        static NEXT: AtomicU32 = AtomicU32::new(0);
        let template = ensure_template()?;
        let name = format!("{PREFIX}{}_{}_{}", std::process::id(), now_secs(), NEXT.fetch_add(1, Ordering::Relaxed));
        let mut admin = admin()?;
        diesel::sql_query(format!("CREATE DATABASE {} TEMPLATE {}", quote_ident(&name), quote_ident(&template)))
            .execute(&mut admin)?;
        Ok(Self { name })
    }

    /// The database name.
    #[must_use]
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Its URL.
    #[must_use]
    pub fn url(&self) -> String {
        db_url(&self.name)
    }

    /// Settings for tests: the production timeouts, except the waits a loaded shared box can
    /// stretch without any outage (a connection from a pool that 200 racing threads share, a
    /// budget that includes that wait), and a pool of 8: the server allows 100 connections
    /// and other test binaries run at the same time.
    #[must_use]
    pub fn config(&self) -> PgConfig {
        PgConfig {
            pool_size: 8,
            checkout_timeout: Duration::from_secs(30),
            connect_timeout: Duration::from_secs(10),
            call_budget: Duration::from_secs(60),
            ..PgConfig::new(self.url())
        }
    }

    /// A store on this database, with [`TestDatabase::config`].
    ///
    /// # Errors
    /// [`TestDbError::Config`] never in practice (the URL is built here).
    pub fn store(&self) -> Result<PgStore, TestDbError> {
        Ok(PgStore::new(&self.config())?)
    }
}

impl Drop for TestDatabase {
    fn drop(&mut self) {
        // FORCE ends the pool's connections, which may outlive this value inside `Ports`.
        if let Ok(mut admin) = admin() {
            if let Err(e) = drop_database(&mut admin, &self.name) {
                tracing::warn!(database = %self.name, error = %e, "could not drop test database");
            }
        }
    }
}

impl PgStore {
    /// Checks out `n` connections at once and returns them, so the pool holds (at least) `n`
    /// open connections: tests that cut connections need them all to exist first.
    ///
    /// # Errors
    /// `Unavailable` when the pool cannot open them in time.
    pub fn open_connections(&self, n: u32) -> Result<(), domain::ports::StoreError> {
        let held = (0..n).map(|_| self.conn()).collect::<Result<Vec<_>, _>>()?;
        // Each one used once, so it exists on the server (checkout alone may reuse).
        let held = held
            .into_iter()
            .map(|mut c| {
                use diesel::connection::SimpleConnection as _;
                c.conn.batch_execute("SELECT 1").map(|()| c)
            })
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| domain::ports::StoreError::Internal(e.to_string()))?;
        drop(held);
        Ok(())
    }
}
