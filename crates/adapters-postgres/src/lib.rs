//! The PostgreSQL adapter: every storage port of the domain (`QueueStore` and `QueueLines`,
//! `RoomStore`, `SettingsStore`, `CatalogueStore`, `ReservationStore`, `AccountStore`,
//! `PaymentStore`, `IdempotencyStore`, `AuditStore`) implemented with diesel 2 over an r2d2 pool, plus the embedded migrations and database
//! creation that the `concert` binary runs at start-up.
//!
//! The adapter decides nothing: the domain states each rule, and each method here makes the
//! domain's decision and the write happen atomically, with one conditional statement or one
//! short transaction whose locks are named in `locks`. Where SQL restates a domain rule (the
//! live claim, bookable schedules, the hold limit, the credit limit, admission timing), a
//! comment names the domain function it mirrors and the conformance suite compares the two at
//! the boundary. Partial unique indexes, foreign keys and CHECK constraints back the rules up
//! as a second line.
//!
//! Time: the domain's clock is bound into every statement that takes a `now`, except
//! admission and token expiry, which are timed on the database server's clock (so instances
//! whose clocks disagree still admit at most N per interval); [`PgStore::with_clock`] replaces
//! that clock with an injected one for tests.
//!
//! # Layout
//! - `config`: [`PgConfig`]: the URL and every bound on waiting; [`ConfigError`].
//! - `pool`: the r2d2 pool, its connections (a statement timer on each) and
//!   [`ensure_database`].
//! - `error`: the one place where failures become `StoreError`s, and why they are told apart
//!   without reading message text.
//! - `work`: a call's autocommit statement or budgeted transaction.
//! - `locks`: the advisory locks and what each serialises.
//! - `issue`: group-commit token issue (a batcher thread per store).
//! - `queue`: the lines (one per room: `PgStore::line`), admission, the draw, presence; an
//!   admission writes no token: it records its range of places in `queue_admission_ranges`,
//!   and the tokens it admitted or skipped read their state off it.
//! - `order`: a drawn line's order, beside its tokens.
//! - `rooms`: the rooms other than `main` and their concerts.
//! - `settings`, `catalogue`, `reservations`, `accounts`, `payments`,
//!   `idempotency`: the ports, each with its SQL.
//! - `sql`: raw statements that diesel prepares once per connection, like its DSL queries.
//! - [`invariants`]: whole-database consistency checks (races, `concert check-invariants`).
//! - `schema`: diesel's table definitions (matches `migrations/`, see `diesel.toml`).
//! - `pgbench` (tests only): keeps `bench/pgbench/*.sql` equal to the statements sent here.
//! - `testing` (feature `testing`): a throw-away database per test, cloned from a migrated
//!   template.

use std::fmt;
use std::sync::Arc;
use std::time::{Duration, Instant};

use diesel::prelude::*;
use diesel::r2d2::PooledConnection;
use diesel::sql_types::BigInt;
use diesel_migrations::{embed_migrations, EmbeddedMigrations, MigrationHarness as _};
use domain::clock::{truncate_to_micros, Clock, StoreTime};
use domain::ports::StoreError;
use domain::queue::QueueSettings;
use domain::random::Randomness;
use domain::room::RoomId;
use domain::service::Ports;
use thiserror::Error;
use time::OffsetDateTime;

mod accounts;
mod audit;
mod catalogue;
mod config;
mod error;
mod idempotency;
pub mod invariants;
mod issue;
mod locks;
mod order;
mod payments;
#[cfg(test)]
mod pgbench;
mod pool;
mod queue;
mod reservations;
mod rooms;
mod schema;
mod settings;
mod sql;
#[cfg(feature = "testing")]
pub mod testing;
mod work;

pub use config::{ConfigError, PgConfig};
pub use pool::{ensure_database, EnsureDatabaseError};

use crate::error::{Fail, Waits};
use crate::work::{Limits, Tx};

/// The migrations in the workspace's `migrations/`, compiled into the binary.
pub const MIGRATIONS: EmbeddedMigrations = embed_migrations!("../../migrations");

/// Session-level advisory lock key held while migrating, so instances starting together do not
/// run the same migration twice. Taken on a dedicated connection, never a pooled one: a
/// session lock on a pooled connection would outlive its user.
const MIGRATION_LOCK: i64 = 0x636f_6e63_6572_7400;

type Conn = PooledConnection<pool::Manager>;

/// Whose clock times admission and token expiry.
#[derive(Clone)]
enum TimeSource {
    /// The database server's (production): `clock_timestamp()` / `statement_timestamp()`.
    Database,
    /// An injected clock, bound into the statements (tests: the suite's `ManualClock`).
    Injected(Arc<dyn Clock>),
}

/// The PostgreSQL store: one pool, shared by every port. Cheap to clone; clones share the
/// pool and the issue batcher. Its queue port is the line of one room (`main`'s unless made
/// by [`PgStore::line`]).
#[derive(Clone)]
pub struct PgStore {
    /// The line whose queue this store serves.
    line: Arc<queue::Line>,
    pool: pool::PgPool,
    maintenance_url: String,
    limits: Limits,
    checkout_timeout: Duration,
    time: TimeSource,
    starting: QueueSettings,
    issuer: Arc<issue::Issuer>,
    /// One count per live clone, so [`PgStore::close`] can tell when it holds the last one.
    handles: Arc<()>,
}

impl fmt::Debug for PgStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let state = self.pool.state();
        f.debug_struct("PgStore")
            .field("connections", &state.connections)
            .field("idle", &state.idle_connections)
            .field("clock", &matches!(self.time, TimeSource::Database).then_some("database").unwrap_or("injected"))
            .finish_non_exhaustive()
    }
}

/// Why migrations could not run.
#[derive(Debug, Error)]
pub enum MigrationError {
    /// The URL is unusable.
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// The database could not be reached.
    #[error("connecting to the database to run migrations")]
    Connect(#[source] diesel::ConnectionError),
    /// The migration lock could not be taken.
    #[error("taking the migration lock")]
    Lock(#[source] diesel::result::Error),
    /// A migration failed (and was rolled back).
    #[error("running migrations")]
    Run(#[source] Box<dyn std::error::Error + Send + Sync>),
}

impl PgStore {
    /// A store over a pool that opens connections lazily, when calls need them: nothing is
    /// connected here, so this succeeds while the database is down, and calls then fail with
    /// `StoreError::Unavailable` (within `checkout_timeout`) until it is back.
    ///
    /// Admission and token expiry are timed on the database server's clock; the waiting room
    /// settings start at `QueueSettings::default()` (see [`PgStore::with_starting_settings`]).
    ///
    /// # Errors
    /// [`ConfigError`] when the configuration is unusable (see [`PgConfig::validate`]).
    pub fn new(cfg: &PgConfig) -> Result<Self, ConfigError> {
        cfg.validate()?;
        let gave_up_after = cfg.lock_timeout.min(cfg.statement_timeout);
        Ok(Self {
            line: Arc::new(queue::Line::new(RoomId::main())),
            pool: pool::build_pool(cfg)?,
            maintenance_url: cfg.maintenance_url()?,
            limits: Limits {
                waits: Waits { gave_up_after, statement_timeout: cfg.statement_timeout },
                budget: cfg.call_budget,
                issue_batch_max: cfg.issue_batch_max,
            },
            checkout_timeout: cfg.checkout_timeout,
            time: TimeSource::Database,
            starting: QueueSettings::default(),
            issuer: Arc::new(issue::Issuer::default()),
            handles: Arc::new(()),
        })
    }

    /// Times admission and token expiry on `clock` instead of the database server's clock
    /// (tests inject their `ManualClock`; production never calls this).
    #[must_use]
    pub fn with_clock(self, clock: Arc<dyn Clock>) -> Self {
        Self { time: TimeSource::Injected(clock), ..self }
    }

    /// The waiting room's settings in force until an operator changes them (from the
    /// configuration: `QUEUE_ADMIT_BATCH`, ...).
    #[must_use]
    pub fn with_starting_settings(self, settings: QueueSettings) -> Self {
        Self { starting: settings, ..self }
    }

    /// Closes every pooled connection on the calling thread, once every other clone of this
    /// store (ports, readiness probes, HTTP workers' state) has been dropped, waiting at most
    /// `wait` for them; stops the issue batcher first. Returns whether it could.
    ///
    /// Call it before the process exits. libpq's TLS runs on OpenSSL, whose global state is
    /// torn down by an `atexit` handler; a connection closed by another thread during that
    /// teardown crashes the process in libcrypto. Closing the pool here, before `main` returns,
    /// leaves nothing for other threads to close.
    #[must_use]
    pub fn close(self, wait: Duration) -> bool {
        let deadline = Instant::now() + wait;
        while Arc::strong_count(&self.handles) > 1 {
            if Instant::now() >= deadline {
                return false;
            }
            std::thread::sleep(Duration::from_millis(5));
        }
        // The last handle: nobody can submit an issue any more.
        self.issuer.stop();
        // Dropping the pool closes its idle connections right here.
        drop(self);
        true
    }

    /// Runs the pending migrations on a dedicated connection, under a session lock so that
    /// instances starting together apply each once; returns the versions applied (empty when
    /// up to date).
    ///
    /// # Errors
    /// [`MigrationError`] when the database cannot be reached or a migration fails (that
    /// migration is rolled back).
    pub fn run_migrations(&self) -> Result<Vec<String>, MigrationError> {
        let mut conn = PgConnection::establish(&self.maintenance_url).map_err(MigrationError::Connect)?;
        diesel::sql_query("SELECT pg_advisory_lock($1)")
            .bind::<BigInt, _>(MIGRATION_LOCK)
            .execute(&mut conn)
            .map_err(MigrationError::Lock)?;
        let applied = conn
            .run_pending_migrations(MIGRATIONS)
            .map(|versions| versions.iter().map(ToString::to_string).collect::<Vec<_>>())
            .map_err(MigrationError::Run);
        // Closing the connection would release the lock too; unlocking keeps it explicit.
        let _ = diesel::sql_query("SELECT pg_advisory_unlock($1)").bind::<BigInt, _>(MIGRATION_LOCK).execute(&mut conn);
        let applied = applied?;
        if !applied.is_empty() {
            tracing::info!(?applied, "applied migrations");
        }
        Ok(applied)
    }

    /// The same store serving the line of `room` as its queue port: same pool, same issue
    /// batcher, every queue statement filtered by that room. A line costs nothing until used.
    #[must_use]
    pub fn line(&self, room: &RoomId) -> Self {
        Self { line: Arc::new(queue::Line::new(room.clone())), ..self.clone() }
    }

    /// Every port, backed by this store; `clock` and `random` are the domain's. The queue port
    /// is `main`'s line; `lines` gives every other room's.
    #[must_use]
    pub fn ports(&self, clock: Arc<dyn Clock>, random: Arc<dyn Randomness>) -> Ports {
        let main = self.line(&RoomId::main());
        let lines = Arc::new(queue::PgLines { store: main.clone() });
        let store = Arc::new(main);
        Ports {
            queue: store.clone(),
            settings: store.clone(),
            catalogue: store.clone(),
            reservations: store.clone(),
            accounts: store.clone(),
            payments: store.clone(),
            idempotency: store.clone(),
            audit: store.clone(),
            rooms: store,
            lines,
            clock,
            random,
        }
    }

    /// Readiness: one round trip to the database.
    ///
    /// # Errors
    /// `Unavailable` when the database cannot be reached in time.
    pub fn ping(&self) -> Result<(), StoreError> {
        use diesel::connection::SimpleConnection as _;
        self.autocommit(|c| c.batch_execute("SELECT 1"))
    }

    /// The pool's connections: (open, idle).
    #[must_use]
    pub fn pool_state(&self) -> (u32, u32) {
        let state = self.pool.state();
        (state.connections, state.idle_connections)
    }

    /// The store clock's `now` to bind: the injected clock's, or `None` for "the server's"
    /// (the statements read `COALESCE($n, <server clock>)`).
    fn store_now(&self) -> Option<OffsetDateTime> {
        match &self.time {
            TimeSource::Database => None,
            TimeSource::Injected(clock) => Some(clock.now()),
        }
    }

    /// A pooled connection, or `Unavailable` after the checkout timeout.
    fn conn(&self) -> Result<Conn, StoreError> {
        self.pool.get_timeout(self.checkout_timeout).map_err(|e| error::from_pool(&e))
    }

    /// Runs `f` as autocommit statements on a pooled connection (see `work`).
    fn autocommit<T>(&self, f: impl FnOnce(&mut PgConnection) -> QueryResult<T>) -> Result<T, StoreError> {
        let mut conn = self.conn()?;
        work::autocommit(&mut conn, self.limits.waits, f)
    }

    /// Runs a write that stands alone as one autocommit statement, sent only while its caller
    /// still waits: sending it is committing it (the server commits whenever it runs it, even
    /// after waking from a freeze), so it goes through the same agreement as a COMMIT
    /// (`domain::call`): a caller that has given up never has it sent, and one that has not
    /// waits for its outcome.
    fn write_alone<T>(&self, f: impl FnOnce(&mut PgConnection) -> QueryResult<T>) -> Result<T, StoreError> {
        let mut conn = self.conn()?;
        if !domain::call::commit_point() {
            return Err(StoreError::Timeout("the caller gave up before the write was sent".into()));
        }
        work::autocommit(&mut conn, self.limits.waits, f)
    }

    /// Runs `f` in a transaction opened by `begin`, committed only within the call budget
    /// counted from `started` (see `work`).
    fn transaction<T, E>(
        &self,
        begin: &str,
        started: Instant,
        f: impl FnOnce(&mut Tx<'_>) -> Result<T, Fail<E>>,
    ) -> Result<Result<T, E>, StoreError> {
        self.transaction_until(begin, started + self.limits.budget, f)
    }

    /// [`PgStore::transaction`] committed only before `deadline`, for work whose bound is not a
    /// request's (the draw).
    fn transaction_until<T, E>(
        &self,
        begin: &str,
        deadline: Instant,
        f: impl FnOnce(&mut Tx<'_>) -> Result<T, Fail<E>>,
    ) -> Result<Result<T, E>, StoreError> {
        let mut conn = self.conn()?;
        work::transaction(&mut conn, begin, deadline, self.limits.waits, f)
    }
}

/// The database server's clock, the one every instance sharing this database goes by (see
/// `domain::clock::StoreTime`); the injected clock in tests.
impl StoreTime for PgStore {
    fn read_time(&self) -> Result<OffsetDateTime, StoreError> {
        if let Some(now) = self.store_now() {
            return Ok(now);
        }
        let row: ServerTime = self.autocommit(|c| sql::prepared(SERVER_TIME).get_result(c))?;
        Ok(truncate_to_micros(row.now))
    }
}

/// Reads the server's clock as it runs the statement (not the transaction's start).
const SERVER_TIME: &str = "SELECT clock_timestamp() AS now";

#[derive(diesel::QueryableByName)]
struct ServerTime {
    #[diesel(sql_type = diesel::sql_types::Timestamptz)]
    now: OffsetDateTime,
}
