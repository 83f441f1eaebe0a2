//! The PostgreSQL adapter: every storage port of the domain (`QueueStore`, `CatalogueStore`,
//! `ReservationStore`, `AccountStore`, `PaymentUnitOfWork`) implemented with diesel 2 over an
//! r2d2 pool, plus the embedded migrations, database creation and demo seeding that the
//! `concert` binary runs at start-up.
//!
//! The adapter decides nothing: the domain states each rule and passes in `now`, and each
//! method here makes the decision and the write happen atomically with one conditional
//! statement or one short transaction. SQL `now()` is never used, so a manual clock drives the
//! same tests here as in memory. Partial unique indexes and CHECK constraints back the rules up
//! as a second line. Statements whose atomicity lives in the SQL (`ON CONFLICT`, conditional
//! `UPDATE … RETURNING`, data-modifying CTEs) are written as raw SQL with typed binds, prepared
//! once per connection like diesel's DSL queries (`sql`), and status literals that match a
//! partial index's predicate are spelled out rather than bound, so the planner can use those
//! indexes with generic (cached) plans.
//!
//! # Layout
//! - [`pool`]: [`PgConfig`], the r2d2 pool (session settings, fail-fast checkout, no ping:
//!   a connection is retired after a statement finds it dead) and [`ensure_database`].
//! - `error`: diesel and pool failures to `StoreError` (`Unavailable` vs `Internal`).
//! - `queue`: tokens, gapless sequence, position cursor, admission under an advisory lock.
//! - `catalogue`, `reservations`, `accounts`, `payments`: the other ports.
//! - `seed`: idempotent insert of the demo catalogue.
//! - `sql`: raw statements that diesel prepares once per connection, like its DSL queries.
//! - [`invariants`]: whole-database consistency checks the race tests run after each race.
//! - `schema`: diesel's table definitions (matches `migrations/`, see `diesel.toml`).
//! - `testing` (feature `testing`): a throw-away database per test, cloned from a migrated
//!   template.

use std::fmt;
use std::sync::Arc;

use anyhow::{anyhow, Context as _};
use diesel::prelude::*;
use diesel::r2d2::PooledConnection;
use diesel::sql_types::BigInt;
use diesel_migrations::{embed_migrations, EmbeddedMigrations, MigrationHarness as _};
use domain::clock::Clock;
use domain::ports::StoreError;
use domain::queue::TokenGenerator;
use domain::service::Ports;

mod accounts;
mod catalogue;
mod error;
pub mod invariants;
mod payments;
pub mod pool;
mod queue;
mod reservations;
mod schema;
mod seed;
mod sql;
#[cfg(feature = "testing")]
pub mod testing;

pub use pool::{ensure_database, PgConfig};

/// The migrations in the workspace's `migrations/`, compiled into the binary.
pub const MIGRATIONS: EmbeddedMigrations = embed_migrations!("../../migrations");

/// Session-level advisory lock key held while migrating, so instances starting together do not
/// run the same migration twice. Taken on a dedicated connection, never a pooled one: a
/// session lock on a pooled connection would outlive its user.
const MIGRATION_LOCK: i64 = 0x636f_6e63_6572_7400;

type Conn = PooledConnection<pool::Manager>;

/// The PostgreSQL store: one pool, shared by every port. Cheap to clone.
#[derive(Clone)]
pub struct PgStore {
    pool: pool::PgPool,
    url: String,
    /// One count per live clone, so [`PgStore::close`] can tell when it holds the last one.
    handles: Arc<()>,
}

impl fmt::Debug for PgStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let state = self.pool.state();
        f.debug_struct("PgStore")
            .field("connections", &state.connections)
            .field("idle", &state.idle_connections)
            .finish_non_exhaustive()
    }
}

impl PgStore {
    /// Builds the pool. Does not wait for the database: if it is down, calls fail with
    /// `StoreError::Unavailable` after `cfg.connect_timeout` until it is back.
    ///
    /// # Errors
    /// None today; kept fallible so configuration checks can be added without breaking callers.
    pub fn connect(cfg: &PgConfig) -> anyhow::Result<Self> {
        Ok(Self { pool: pool::build_pool(cfg), url: cfg.effective_url(), handles: Arc::new(()) })
    }

    /// Closes every pooled connection on the calling thread, once every other clone of this
    /// store (ports, readiness probes, HTTP workers' state) has been dropped, waiting at most
    /// `wait` for them. Returns whether it could.
    ///
    /// Call it before the process exits. libpq's TLS runs on OpenSSL, whose global state is
    /// torn down by an `atexit` handler; a connection closed by another thread during that
    /// teardown (an HTTP worker dropping the last clone late) crashes the process in libcrypto.
    /// Closing the pool here, before `main` returns, leaves nothing for other threads to close.
    #[must_use]
    pub fn close(self, wait: std::time::Duration) -> bool {
        let deadline = std::time::Instant::now() + wait;
        while Arc::strong_count(&self.handles) > 1 {
            if std::time::Instant::now() >= deadline {
                return false;
            }
            std::thread::sleep(std::time::Duration::from_millis(5));
        }
        // The last handle: dropping the pool closes its idle connections right here.
        drop(self);
        true
    }

    /// Runs the pending migrations; returns the versions applied (empty when up to date).
    ///
    /// # Errors
    /// When the database cannot be reached or a migration fails (that migration is rolled
    /// back).
    pub fn run_migrations(&self) -> anyhow::Result<Vec<String>> {
        let mut conn = PgConnection::establish(&self.url).context("connecting to run migrations")?;
        diesel::sql_query("SELECT pg_advisory_lock($1)").bind::<BigInt, _>(MIGRATION_LOCK).execute(&mut conn)?;
        let applied = conn
            .run_pending_migrations(MIGRATIONS)
            .map(|versions| versions.iter().map(ToString::to_string).collect::<Vec<_>>())
            .map_err(|e| anyhow!("running migrations: {e}"));
        // Closing the connection would release the lock too; unlocking keeps it explicit.
        let _ = diesel::sql_query("SELECT pg_advisory_unlock($1)").bind::<BigInt, _>(MIGRATION_LOCK).execute(&mut conn);
        let applied = applied?;
        if !applied.is_empty() {
            tracing::info!(?applied, "applied migrations");
        }
        Ok(applied)
    }

    /// Every port, backed by this store.
    #[must_use]
    pub fn ports(&self, clock: Arc<dyn Clock>, tokens: Arc<dyn TokenGenerator>) -> Ports {
        let store = Arc::new(self.clone());
        Ports {
            queue: store.clone(),
            catalogue: store.clone(),
            reservations: store.clone(),
            accounts: store.clone(),
            payments: store,
            clock,
            tokens,
        }
    }

    /// Inserts the demo catalogue unless it is there; `true` if anything was inserted.
    ///
    /// # Errors
    /// When the database fails; nothing is inserted then.
    pub fn seed(&self, catalogue: &domain::demo::DemoCatalogue) -> anyhow::Result<bool> {
        let mut conn = self.conn().map_err(|e| anyhow!(e))?;
        conn.run(|c| seed::seed(c, catalogue)).context("seeding the demo catalogue")
    }

    /// Readiness: one round trip to the database.
    ///
    /// # Errors
    /// `Unavailable` when the database cannot be reached in time.
    pub fn ping(&self) -> Result<(), StoreError> {
        let mut conn = self.conn()?;
        conn.run(|c| diesel::sql_query("SELECT 1").execute(c)).map(|_| ()).map_err(error::from_diesel)
    }

    /// A pooled connection, or `Unavailable` after the connection timeout.
    fn conn(&self) -> Result<Conn, StoreError> {
        self.pool.get().map_err(|e| error::from_pool(&e))
    }

    /// Runs `f` on a pooled connection, mapping failures (and retiring the connection if it
    /// turned out to be dead, see [`pool::PgConn`]).
    fn with_conn<T>(&self, f: impl FnOnce(&mut PgConnection) -> QueryResult<T>) -> Result<T, StoreError> {
        let mut conn = self.conn()?;
        conn.run(f).map_err(error::from_diesel)
    }
}
