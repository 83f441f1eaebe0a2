//! Building and running the service: stores, use cases, HTTP server and scheduler, the schema
//! migration that waits for the database, and their orderly stop.
//!
//! `serve` never refuses to start because a store is down: it binds its port at once, answers
//! `/health/ready` 503 (and store-backed requests 503) until PostgreSQL (and, with
//! `QUEUE_STORE=redis`, Redis) can be reached and the schema is migrated, then becomes ready,
//! as an orchestrator expects. The database is created and migrated by a background task that
//! retries every second and logs once, naming the setting to fix, while it cannot.

use std::future::Future;
use std::net::TcpListener;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use actix_web::dev::Server;
use actix_web::{App, HttpServer};
use adapters_http::{ApiState, Identity, PoolConnections};
use adapters_local::async_lines::CachedAsyncLines;
use adapters_local::poll_cache::{CachedQueue, PollCacheBudget};
use adapters_local::rooms_cache::{CachedLines, CachedRooms};
use adapters_local::settings_cache::CachedSettings;
use adapters_local::store_clock::StoreClock;
use adapters_local::ticker::SystemTicker;
use adapters_local::{OsRandom, SystemClock};
use adapters_memory::MemoryStore;
use adapters_postgres::{PgConfig, PgStore};
use adapters_redis::{AsyncRedisLines, RedisConfig, RedisQueue};
use anyhow::Context as _;
use domain::clock::{Clock, StoreTime};
use domain::ports::{AsyncQueueLines, QueueStore, StoreError};
use domain::random::Randomness;
use domain::service::{Ports, Ticketing};
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tracing_actix_web::TracingLogger;

use crate::demo;
use crate::settings::{DatabaseSettings, QueueStoreKind, RedisSettings, Settings, StoreKind};
use crate::telemetry::RequestSpan;

/// How long a graceful stop waits for in-flight requests before closing them.
const SHUTDOWN_GRACE_SECS: u64 = 30;

/// How long the stop waits for HTTP workers to let go of the database pool before closing it.
const POOL_CLOSE_WAIT: Duration = Duration::from_secs(5);

/// How often the schema task retries while the database cannot be reached.
const SCHEMA_RETRY: Duration = Duration::from_secs(1);

/// A readiness probe of one store.
type Probe = Arc<dyn Fn() -> Result<(), StoreError> + Send + Sync>;

/// The stores, wired.
struct Stores {
    ports: Ports,
    probes: Vec<Probe>,
    postgres: Option<PgStore>,
    /// Set once the schema is migrated (always set for the memory store).
    schema_ready: Arc<AtomicBool>,
}

/// The running background tasks and the switch that stops them.
#[derive(Debug)]
struct Background {
    shutdown: watch::Sender<bool>,
    tasks: Vec<JoinHandle<()>>,
}

/// The service, bound and ready to run.
pub struct Application {
    addr: std::net::SocketAddr,
    server: Server,
    background: Background,
    ticketing: Ticketing,
    /// What every handler shares (for [`Application::api`]).
    api: ApiState,
    /// Kept to close the pool before the process exits (see [`PgStore::close`]).
    postgres: Option<PgStore>,
    scheduler: bool,
}

impl std::fmt::Debug for Application {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Application").field("addr", &self.addr).finish_non_exhaustive()
    }
}

impl Application {
    /// Builds the stores (lazily connected; for memory: the demo catalogue loaded), binds
    /// `bind_addr`, starts the HTTP workers, the schema task (PostgreSQL) and, unless disabled,
    /// the scheduler. Requests are served once this returns; [`Application::run_until_stopped`]
    /// keeps it running.
    ///
    /// Must run inside a Tokio runtime.
    ///
    /// # Errors
    /// When a setting cannot work (a malformed URL) or the address cannot be bound; never
    /// because a store is down.
    pub async fn build(settings: Settings) -> anyhow::Result<Self> {
        let metrics = adapters_http::metrics::install_recorder().context("installing the metrics recorder")?;
        let random: Arc<dyn Randomness> = Arc::new(OsRandom);
        let (redis, redis_async) = match settings.queue_store {
            QueueStoreKind::Redis => {
                let (queue, lines) = redis_queue(&settings.redis)?;
                (Some(Arc::new(queue)), Some(lines))
            }
            QueueStoreKind::Postgres => (None, None),
        };
        let mut stores = match settings.store {
            StoreKind::Memory => {
                // Alone with its memory, an instance's own clock is the store's; with the queue
                // on a Redis that other instances share, Redis' clock is.
                let clock: Arc<dyn Clock> = match &redis {
                    Some(redis) => store_clock(redis.clone())?,
                    None => Arc::new(SystemClock),
                };
                memory_stores(&settings, &clock, &random)?
            }
            StoreKind::Postgres => postgres_stores(&settings, &random)?,
        };
        if let Some(queue) = redis {
            let probe = queue.clone();
            let front = redis_async.clone();
            stores.probes.push(Arc::new(move || {
                let pong = probe.ping();
                if let (Ok(()), Some(front)) = (&pong, &front) {
                    // Ready means the front door's async client connects again too.
                    front.redis_answered();
                }
                pong
            }));
            // Every room's line on the same Redis, under its own hash tag.
            stores.ports.lines = Arc::new(queue.lines());
            stores.ports.queue = queue;
        }
        let mut main_line_cache: Option<(Arc<CachedQueue>, Duration)> = None;
        let mut line_caches: Option<(Arc<CachedQueue>, Arc<CachedLines>)> = None;
        let shared_queue = settings.store == StoreKind::Postgres || settings.queue_store == QueueStoreKind::Redis;
        if let (true, Some(cache)) = (shared_queue, settings.poll_cache_settings()) {
            // Polls of WAITING tokens from memory, in main's line and every room's; see
            // `adapters_local::poll_cache`.
            // One budget for `main`'s cache and every room's: the capacity bounds the instance.
            let budget = PollCacheBudget::default();
            let main_cache = Arc::new(CachedQueue::sharing(
                stores.ports.queue.clone(),
                Arc::new(SystemTicker),
                cache,
                budget.clone(),
            ));
            main_line_cache = Some((main_cache.clone(), keeper_period(cache.cursor_ttl)));
            let room_caches =
                Arc::new(CachedLines::new(stores.ports.lines.clone(), Arc::new(SystemTicker), cache, budget));
            line_caches = Some((main_cache.clone(), room_caches.clone()));
            stores.ports.queue = main_cache;
            stores.ports.lines = room_caches;
        }
        // The front door's queue calls on Redis without the hop to the blocking pool, through
        // the same poll caches as the blocking path (see `domain::service::front`).
        let front: Option<Arc<dyn AsyncQueueLines>> = redis_async.map(|lines| -> Arc<dyn AsyncQueueLines> {
            match &line_caches {
                Some((main, rooms)) => Arc::new(CachedAsyncLines::new(Arc::new(lines), main.clone(), rooms.clone())),
                None => Arc::new(lines),
            }
        });
        let rooms_cache = Arc::new(CachedRooms::new(
            stores.ports.rooms.clone(),
            Arc::new(SystemTicker),
            settings.settings_cache_ttl(),
        ));
        stores.ports.rooms = rooms_cache.clone();
        let settings_cache = Arc::new(CachedSettings::new(
            stores.ports.settings.clone(),
            Arc::new(SystemTicker),
            settings.settings_cache_ttl(),
        ));
        stores.ports.settings = settings_cache.clone();
        let keeper = Keeper {
            settings: settings_cache,
            rooms: rooms_cache,
            main_line: main_line_cache,
            period: keeper_period(settings.settings_cache_ttl()),
        };
        let mut ticketing = Ticketing::new(stores.ports.clone(), settings.policy());
        if let Some(front) = front {
            ticketing = ticketing.with_async_queue(front);
        }

        let identity = settings.auth.identity().map_err(anyhow::Error::msg)?.map(Identity::new);
        let listener = TcpListener::bind(&settings.bind_addr)
            .with_context(|| format!("cannot listen on {} (set BIND_ADDR or --bind-addr)", settings.bind_addr))?;
        let addr = listener.local_addr().context("reading the bound address")?;
        let mut state = ApiState::builder(ticketing.clone())
            .readiness(readiness(stores.schema_ready.clone(), stores.probes.clone()))
            // Reads and writes take few slots, issues as many as there are connections: see
            // adapters_http::state, "Store slots".
            .store_slots(usize::try_from(settings.database.store_slots()).unwrap_or(1))
            .issue_slots(usize::try_from(settings.database.database_pool_size).unwrap_or(1))
            // The HTTP layer's slot wait (1 s) and store deadline (4.5 s) are longer together than
            // the PostgreSQL adapter's commit budget (2.5 s) needs: see adapters_http::state.
            .admin_token(settings.admin_token.as_deref())
            .identity(identity.clone())
            .issue_rate_per_min(settings.issue_rate_per_min)
            .trusted_proxies(settings.trusted_proxies.clone())
            .metrics(metrics)
            .store_gate(stores.schema_ready.clone());
        if let Some(pg) = stores.postgres.clone() {
            state = state.pool_gauge(move || {
                let (open, idle) = pg.pool_state();
                PoolConnections { idle, busy: open.saturating_sub(idle) }
            });
        }
        let state = state.build();
        let api = state.clone();
        let sampler = state.admin_enabled().then(|| state.clone());
        let mut server = HttpServer::new(move || {
            App::new().wrap(TracingLogger::<RequestSpan>::new()).configure(adapters_http::configure(state.clone()))
        })
        // Signals are ours (see `ShutdownSignals`): actix would stop abruptly on SIGINT.
        .disable_signals()
        .shutdown_timeout(SHUTDOWN_GRACE_SECS);
        if let Some(workers) = settings.http_workers {
            server = server.workers(usize::from(workers));
        }
        let server = server.listen(listener).context("starting the HTTP server")?.run();
        tracing::info!(%addr, store = ?settings.store, queue = ?settings.queue_store, "HTTP server bound");

        let (shutdown, stop_rx) = watch::channel(false);
        let mut tasks = Vec::new();
        if let Some(identity) = identity {
            let config = identity.config();
            tracing::info!(issuer = %config.issuer, audience = ?config.audiences, claim = %config.user_claim, "signed identities on: the routes that name a user trust only the issuer's tokens");
            // Fetches the issuer's keys now and keeps them fresh; see adapters_http::identity.
            tasks.push(tokio::spawn(identity.run_refresher(stop_rx.clone())));
        }
        if let Some(pg) = stores.postgres.clone() {
            tasks.push(tokio::spawn(prepare_schema(
                pg,
                settings.database.clone(),
                stores.schema_ready.clone(),
                stop_rx.clone(),
            )));
        }
        tasks.push(tokio::spawn(keeper.run(stores.schema_ready.clone(), stop_rx.clone())));
        if let Some(state) = sampler {
            // The console's 30 minutes of each room's figures, in this instance's memory
            // (see adapters_http::history); only with the operator API on, which serves them.
            tasks.push(tokio::spawn(state.run_sampler(stop_rx.clone())));
        }
        if settings.scheduler_enabled {
            let ticketing = ticketing.clone();
            let schedule = settings.scheduler_settings();
            let ready = stores.schema_ready.clone();
            let mut rx = stop_rx.clone();
            tasks.push(tokio::spawn(async move {
                // Ticks against a schema that does not exist yet would only fail.
                while !ready.load(Ordering::Acquire) {
                    tokio::select! {
                        () = tokio::time::sleep(Duration::from_millis(100)) => {}
                        _ = rx.changed() => return,
                    }
                }
                if let Err(e) = scheduler::spawn(ticketing, schedule, rx).await {
                    tracing::error!(error = %e, "the scheduler task failed");
                }
            }));
        } else {
            tracing::info!("scheduler disabled: this instance serves the API only");
        }
        Ok(Self {
            addr,
            server,
            background: Background { shutdown, tasks },
            ticketing,
            api,
            postgres: stores.postgres,
            scheduler: settings.scheduler_enabled,
        })
    }

    /// The port the server listens on (the real one when `bind_addr` asked for port 0).
    #[must_use]
    pub fn port(&self) -> u16 {
        self.addr.port()
    }

    /// What the HTTP handlers share: among it, how many store calls they made by path
    /// ([`ApiState::store_calls`]: hops to the blocking pool, and calls awaited on the workers,
    /// the front door's queue calls on Redis).
    #[must_use]
    pub fn api(&self) -> ApiState {
        self.api.clone()
    }

    /// Whether this instance runs the scheduler (`SCHEDULER_ENABLED`).
    #[must_use]
    pub fn runs_scheduler(&self) -> bool {
        self.scheduler
    }

    /// The use cases the server runs, for tests that drive time-based steps directly.
    #[must_use]
    pub fn ticketing(&self) -> &Ticketing {
        &self.ticketing
    }

    /// Serves until SIGTERM or SIGINT, then stops gracefully (see [`Application::run_until`]).
    ///
    /// # Errors
    /// When the HTTP server fails.
    pub async fn run_until_stopped(self) -> anyhow::Result<()> {
        let signals = ShutdownSignals::install()?;
        self.run_until(signals.recv()).await
    }

    /// Serves until `stop` completes, then: stops accepting connections, lets in-flight
    /// requests finish (up to 30 s), stops the scheduler and the schema task and waits for
    /// them, closes the database pool.
    ///
    /// # Errors
    /// When the HTTP server fails.
    pub async fn run_until<F>(self, stop: F) -> anyhow::Result<()>
    where
        F: Future<Output = ()> + Send + 'static,
    {
        let Self { addr, server, background, ticketing, postgres, .. } = self;
        // Only the HTTP workers and the background tasks may hold the stores from here on.
        drop(ticketing);
        let handle = server.handle();
        // The server future must keep being polled while it drains, so the stop request is
        // sent from another task.
        let stopper = tokio::spawn(async move {
            stop.await;
            tracing::info!("stopping: no new connections, finishing in-flight requests");
            handle.stop(true).await;
        });
        // Logged only now that the stop path (and, from `run_until_stopped`, the signal
        // handlers) is in place: whoever waits for this line may signal at once.
        tracing::info!(%addr, "listening on http://{addr}");
        let served = server.await;
        stopper.abort();
        // A send error means every task already ended; awaiting them is still right.
        let _ = background.shutdown.send(true);
        for task in background.tasks {
            if let Err(e) = task.await {
                tracing::error!(error = %e, "a background task failed");
            }
        }
        if let Some(store) = postgres {
            let closed = tokio::task::spawn_blocking(move || store.close(POOL_CLOSE_WAIT)).await.unwrap_or(false);
            if !closed {
                tracing::warn!("database connections still in use at exit; leaving them to the OS");
            }
        }
        served.context("the HTTP server failed")?;
        tracing::info!("stopped");
        Ok(())
    }
}

/// Ready when the schema is migrated and every store answers.
/// Keeps the in-memory copies that polls are answered from fresh ahead of their expiry: the
/// settings and the rooms (each at most `SCHEDULER_CHECK_MILLIS` old when a poll reads it from
/// memory) and `main`'s cursor (at most `QUEUE_POLL_CACHE_MILLIS` old).
///
/// Without it the copies were re-read only by the scheduler's check, once per check period,
/// which is also their age limit: each copy expired a little before the next check read it
/// again, and in that gap every poll of a WAITING token missed memory, hopped to a blocking
/// thread, queued for a store slot behind issues and payments and read the settings again.
/// With a thousand polls in flight per millisecond of the gap, those were the WAITING-poll
/// spikes (p99 tens to hundreds of milliseconds on a path that answers from memory in a
/// quarter of one). An instance without a scheduler had the gap every period, unfilled until a
/// poll paid for the read.
struct Keeper {
    settings: Arc<CachedSettings>,
    rooms: Arc<CachedRooms>,
    /// How often the settings and the rooms are re-read.
    period: Duration,
    /// `main`'s poll cache and how often its cursor is re-read (a shorter age limit).
    main_line: Option<(Arc<CachedQueue>, Duration)>,
}

/// How often the keeper re-reads: a third of the shortest age limit, so a copy is re-read
/// twice before it would expire even when one read is slow; at most every 50 ms.
fn keeper_period(ttl: Duration) -> Duration {
    (ttl / 3).max(Duration::from_millis(50))
}

impl Keeper {
    async fn run(self, ready: Arc<AtomicBool>, mut stop: watch::Receiver<bool>) {
        let tick = self.main_line.as_ref().map_or(self.period, |(_, every)| self.period.min(*every));
        let keeper = Arc::new(self);
        let mut every = tokio::time::interval(tick);
        every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut last_settings: Option<tokio::time::Instant> = None;
        loop {
            tokio::select! {
                _ = every.tick() => {}
                _ = stop.changed() => return,
            }
            if !ready.load(Ordering::Acquire) {
                continue;
            }
            let now = tokio::time::Instant::now();
            // Within half a tick of its period: the next tick would be late for it.
            let settings_due = last_settings.is_none_or(|at| now + tick / 2 >= at + keeper.period);
            if settings_due {
                last_settings = Some(now);
            }
            let keeper = keeper.clone();
            // Store reads block: on the blocking pool, one round at a time.
            let _ = tokio::task::spawn_blocking(move || keeper.refresh(settings_due)).await;
        }
    }

    fn refresh(&self, settings_due: bool) {
        let mut failed = Vec::new();
        if settings_due {
            failed.extend(self.settings.refresh().err());
            failed.extend(domain::ports::RoomStore::rooms(self.rooms.as_ref()).err());
        }
        if let Some((line, _)) = &self.main_line {
            failed.extend(line.refresh().err());
        }
        for e in failed {
            // The copies then expire as before and polls read the store: nothing is lost.
            tracing::debug!(error = %e, "refreshing an in-memory copy failed; retrying at the next round");
        }
    }
}

fn readiness(schema_ready: Arc<AtomicBool>, probes: Vec<Probe>) -> impl Fn() -> Result<(), StoreError> + Send + Sync {
    move || {
        if !schema_ready.load(Ordering::Acquire) {
            return Err(StoreError::Unavailable("the database schema is not migrated yet".into()));
        }
        probes.iter().try_for_each(|probe| probe())
    }
}

/// SIGTERM and SIGINT, listened for from the moment this is made: the default action
/// (terminate at once) no longer applies, even before anyone awaits [`ShutdownSignals::recv`].
struct ShutdownSignals {
    #[cfg(unix)]
    terminate: tokio::signal::unix::Signal,
    #[cfg(unix)]
    interrupt: tokio::signal::unix::Signal,
}

impl ShutdownSignals {
    fn install() -> anyhow::Result<Self> {
        #[cfg(unix)]
        {
            use tokio::signal::unix::{signal, SignalKind};
            Ok(Self {
                terminate: signal(SignalKind::terminate()).context("listening for SIGTERM")?,
                interrupt: signal(SignalKind::interrupt()).context("listening for SIGINT")?,
            })
        }
        #[cfg(not(unix))]
        Ok(Self {})
    }

    /// Resolves on the first SIGTERM or SIGINT.
    async fn recv(self) {
        #[cfg(unix)]
        {
            let Self { mut terminate, mut interrupt } = self;
            tokio::select! {
                _ = terminate.recv() => tracing::info!("SIGTERM received"),
                _ = interrupt.recv() => tracing::info!("SIGINT received"),
            }
        }
        #[cfg(not(unix))]
        {
            let _ = self;
            let _ = tokio::signal::ctrl_c().await;
            tracing::info!("Ctrl-C received");
        }
    }
}

fn memory_stores(settings: &Settings, clock: &Arc<dyn Clock>, random: &Arc<dyn Randomness>) -> anyhow::Result<Stores> {
    let store = MemoryStore::with_settings(settings.starting_queue_settings());
    let ports = store.ports(clock.clone(), random.clone());
    let seeded = demo::ensure(ports.catalogue.as_ref(), clock.now()).context("loading the demo catalogue")?;
    tracing::info!(
        concerts = seeded.concerts,
        schedules = seeded.schedules,
        "serving from memory with the demo catalogue"
    );
    Ok(Stores {
        ports,
        probes: vec![Arc::new(move || store.ping())],
        postgres: None,
        schema_ready: Arc::new(AtomicBool::new(true)),
    })
}

fn postgres_stores(settings: &Settings, random: &Arc<dyn Randomness>) -> anyhow::Result<Stores> {
    let store = PgStore::new(&pg_config(&settings.database))
        .context("DATABASE_URL (--database-url) is not a usable PostgreSQL URL")?
        .with_starting_settings(settings.starting_queue_settings());
    // Holds, keys, tokens: every time is the database's (with the queue on Redis too: the
    // database of record decides, and Redis' own clock only times what its scripts do).
    let clock = store_clock(Arc::new(store.clone()))?;
    let ports = store.ports(clock, random.clone());
    let probe = store.clone();
    Ok(Stores {
        ports,
        probes: vec![Arc::new(move || probe.ping())],
        postgres: Some(store),
        schema_ready: Arc::new(AtomicBool::new(false)),
    })
}

/// How often an instance samples its store's clock (see `adapters_local::store_clock`).
const CLOCK_SYNC_EVERY: Duration = Duration::from_secs(1);

/// A skew larger than this between an instance's wall clock and its store's is logged as a
/// warning: it changes nothing (every time is the store's) but says that NTP is not working.
const CLOCK_SKEW_WARNING: time::Duration = time::Duration::seconds(1);

/// The domain's clock for an instance that shares `source` with others: the store's time,
/// sampled every second by a thread that logs when it stops or starts answering.
fn store_clock(source: Arc<dyn StoreTime>) -> anyhow::Result<Arc<dyn Clock>> {
    let clock = Arc::new(StoreClock::new(source));
    let mut answering: Option<bool> = None;
    clock
        .keep_in_sync(CLOCK_SYNC_EVERY, move |result| match result {
            Ok(synced) => {
                if answering != Some(true) {
                    let ahead_ms = synced.wall_ahead.whole_milliseconds();
                    if synced.wall_ahead.abs() > CLOCK_SKEW_WARNING {
                        tracing::warn!(ahead_ms, "this machine's clock is off the store's; every time is taken from the store's clock, but check NTP here");
                    } else {
                        tracing::info!(ahead_ms, round_trip_us = synced.round_trip.as_micros(), "times are taken from the store's clock");
                    }
                }
                answering = Some(true);
            }
            Err(e) => {
                if answering != Some(false) {
                    tracing::warn!(error = %e, "cannot read the store's clock; carrying the last reading forward (the machine's own clock before the first)");
                }
                answering = Some(false);
            }
        })
        .context("starting the store clock's thread")?;
    Ok(clock)
}

/// The queue on the Redis of `REDIS_URL` (one URL is one Redis, a comma-separated list the
/// nodes of a Redis Cluster: see `adapters_redis`, "Redis Cluster"), and its non-blocking
/// client for the front door (`adapters_redis::aio`).
fn redis_queue(settings: &RedisSettings) -> anyhow::Result<(RedisQueue, AsyncRedisLines)> {
    let cfg = RedisConfig::with_url_and_prefix(settings.redis_url.clone(), settings.redis_key_prefix.clone());
    let queue = RedisQueue::new(&cfg).context("REDIS_URL (--redis-url) or REDIS_KEY_PREFIX cannot be used")?;
    if cfg.is_cluster() {
        tracing::info!(
            nodes = %cfg.redacted_url(),
            replica_acks = cfg.effective_replica_acks(),
            "the queue is on a Redis Cluster: each room's line on the master of its slot"
        );
    }
    let lines = AsyncRedisLines::new(&cfg).context("REDIS_URL (--redis-url) or REDIS_KEY_PREFIX cannot be used")?;
    Ok((queue, lines))
}

/// The PostgreSQL adapter's configuration from the settings.
#[must_use]
pub fn pg_config(db: &DatabaseSettings) -> PgConfig {
    PgConfig {
        pool_size: db.database_pool_size,
        checkout_timeout: Duration::from_millis(db.database_connect_timeout_millis),
        lock_timeout: Duration::from_millis(db.database_lock_timeout_millis),
        statement_timeout: Duration::from_millis(db.database_statement_timeout_millis),
        ..PgConfig::new(db.database_url.clone())
    }
}

/// Creates the database if missing and runs pending migrations, retrying every second until it
/// can; logs once when it cannot, once when it could, and marks the schema ready.
async fn prepare_schema(store: PgStore, db: DatabaseSettings, ready: Arc<AtomicBool>, mut stop: watch::Receiver<bool>) {
    let mut failing = false;
    loop {
        let (store2, db2) = (store.clone(), db.clone());
        let outcome = tokio::task::spawn_blocking(move || migrate_store(&store2, &db2)).await;
        match outcome {
            Ok(Ok(())) => {
                ready.store(true, Ordering::Release);
                if failing {
                    tracing::info!("the database is reachable again; schema up to date, serving");
                }
                return;
            }
            Ok(Err(e)) if !failing => {
                failing = true;
                tracing::warn!(
                    error = format!("{e:#}"),
                    "cannot prepare the database; answering 503 and retrying every second (check DATABASE_URL / --database-url)"
                );
            }
            Ok(Err(e)) => tracing::debug!(error = format!("{e:#}"), "database still unreachable"),
            Err(join) => {
                tracing::error!(error = %join, "the schema task failed");
                return;
            }
        }
        tokio::select! {
            () = tokio::time::sleep(SCHEMA_RETRY) => {}
            _ = stop.changed() => return,
        }
    }
}

fn migrate_store(store: &PgStore, db: &DatabaseSettings) -> anyhow::Result<()> {
    adapters_postgres::ensure_database(&pg_config(db)).context("creating the database named in DATABASE_URL")?;
    let applied = store.run_migrations().context("running migrations")?;
    tracing::info!(applied = applied.len(), "database schema up to date");
    Ok(())
}

/// Creates the database if missing, and runs pending migrations (one-shot commands).
///
/// # Errors
/// When the server cannot be reached or a migration fails; the message names the setting.
pub fn prepare_database(db: &DatabaseSettings) -> anyhow::Result<PgStore> {
    let store = PgStore::new(&pg_config(db)).context("DATABASE_URL (--database-url) is not a usable PostgreSQL URL")?;
    migrate_store(&store, db).context("cannot prepare the database (check DATABASE_URL / --database-url)")?;
    Ok(store)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_keeper_rereads_three_times_per_age_limit_and_at_most_every_50_ms() {
        assert_eq!(keeper_period(Duration::from_secs(1)), Duration::from_secs(1) / 3);
        assert_eq!(keeper_period(Duration::from_millis(90)), Duration::from_millis(50));
    }
}
