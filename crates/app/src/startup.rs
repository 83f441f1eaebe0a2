//! Building and running the service: store, use cases, HTTP server and scheduler, and their
//! orderly stop.

use std::future::Future;
use std::net::TcpListener;
use std::sync::Arc;

use actix_web::dev::Server;
use actix_web::{App, HttpServer};
use adapters_http::{ApiState, Readiness};
use adapters_memory::MemoryStore;
use adapters_postgres::PgStore;
use anyhow::Context as _;
use domain::clock::{Clock, SystemClock};
use domain::demo;
use domain::queue::OsTokenGenerator;
use domain::queue_cache::{CachedQueue, QueueCacheSettings};
use domain::service::{Ports, Ticketing};
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tracing_actix_web::TracingLogger;

use crate::settings::{DatabaseSettings, Settings, StoreKind};
use crate::telemetry::RequestSpan;

/// How long a graceful stop waits for in-flight requests before closing them.
const SHUTDOWN_GRACE_SECS: u64 = 30;

/// How long the stop waits for HTTP workers to let go of the database pool before closing it.
const POOL_CLOSE_WAIT: std::time::Duration = std::time::Duration::from_secs(5);

/// The running scheduler and the switch that stops it.
#[derive(Debug)]
struct SchedulerTask {
    shutdown: watch::Sender<bool>,
    task: JoinHandle<()>,
}

/// The service, bound and ready to run.
pub struct Application {
    addr: std::net::SocketAddr,
    server: Server,
    scheduler: Option<SchedulerTask>,
    ticketing: Ticketing,
    /// Kept to close the pool before the process exits (see [`PgStore::close`]).
    postgres: Option<PgStore>,
}

impl std::fmt::Debug for Application {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Application")
            .field("addr", &self.addr)
            .field("scheduler", &self.scheduler.is_some())
            .finish_non_exhaustive()
    }
}

/// A store and how to probe it.
struct Store {
    ports: Ports,
    readiness: Arc<dyn Readiness>,
    postgres: Option<PgStore>,
}

impl Application {
    /// Builds the store (for PostgreSQL: creates the database if missing and runs pending
    /// migrations; for memory: loads the demo catalogue), binds `bind_addr`, starts the HTTP
    /// workers and, unless disabled, the scheduler. Requests are served once this returns;
    /// [`Application::run_until_stopped`] keeps it running.
    ///
    /// Must run inside a Tokio runtime.
    ///
    /// # Errors
    /// When the database cannot be prepared or the address cannot be bound.
    pub async fn build(settings: Settings) -> anyhow::Result<Self> {
        let clock: Arc<dyn Clock> = Arc::new(SystemClock);
        let store = match settings.store {
            StoreKind::Memory => memory_store(&clock),
            StoreKind::Postgres => {
                let db = settings.database.clone();
                let clock = clock.clone();
                let cache = settings.queue_cache_settings();
                tokio::task::spawn_blocking(move || postgres_store(&db, clock, cache))
                    .await
                    .context("preparing the database")??
            }
        };
        let ticketing = Ticketing::new(store.ports, settings.policy());

        let listener = TcpListener::bind(&settings.bind_addr)
            .with_context(|| format!("cannot listen on {}", settings.bind_addr))?;
        let addr = listener.local_addr().context("reading the bound address")?;
        let state = ApiState::new(ticketing.clone(), store.readiness);
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
        tracing::info!(%addr, store = ?settings.store, "HTTP server bound");

        let scheduler = settings.scheduler_enabled.then(|| {
            let (shutdown, rx) = watch::channel(false);
            let task = scheduler::spawn(ticketing.clone(), settings.scheduler_settings(), rx);
            SchedulerTask { shutdown, task }
        });
        if scheduler.is_none() {
            tracing::info!("scheduler disabled: this instance serves the API only");
        }
        Ok(Self { addr, server, scheduler, ticketing, postgres: store.postgres })
    }

    /// The port the server listens on (the real one when `bind_addr` asked for port 0).
    #[must_use]
    pub fn port(&self) -> u16 {
        self.addr.port()
    }

    /// The use cases the server runs, for tests that drive time-based steps directly.
    #[must_use]
    pub fn ticketing(&self) -> &Ticketing {
        &self.ticketing
    }

    /// Serves until SIGTERM or SIGINT, then stops gracefully (see [`Application::run_until`]).
    ///
    /// # Errors
    /// When the HTTP server fails or the scheduler task panicked.
    pub async fn run_until_stopped(self) -> anyhow::Result<()> {
        let signals = ShutdownSignals::install()?;
        self.run_until(signals.recv()).await
    }

    /// Serves until `stop` completes, then: stops accepting connections, lets in-flight
    /// requests finish (up to 30 s), tells the scheduler to stop and waits for it.
    ///
    /// # Errors
    /// When the HTTP server fails or the scheduler task panicked.
    pub async fn run_until<F>(self, stop: F) -> anyhow::Result<()>
    where
        F: Future<Output = ()> + Send + 'static,
    {
        let Self { addr, server, scheduler, ticketing, postgres } = self;
        // Only the HTTP workers and the scheduler may hold the store from here on.
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
        if let Some(SchedulerTask { shutdown, task }) = scheduler {
            // A send error means the task already ended; awaiting it below is still right.
            let _ = shutdown.send(true);
            task.await.context("the scheduler task failed")?;
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

fn memory_store(clock: &Arc<dyn Clock>) -> Store {
    let store = MemoryStore::new();
    store.seed(&demo::catalogue(clock.now()));
    let ports = store.ports(clock.clone(), Arc::new(OsTokenGenerator));
    Store { ports, readiness: Arc::new(move || store.ping()), postgres: None }
}

fn postgres_store(
    db: &DatabaseSettings,
    clock: Arc<dyn Clock>,
    cache: Option<QueueCacheSettings>,
) -> anyhow::Result<Store> {
    let store = prepare_database(db)?;
    let mut ports = store.ports(clock.clone(), Arc::new(OsTokenGenerator));
    if let Some(settings) = cache {
        // Polls of WAITING tokens from memory; see `domain::queue_cache` for what stays exact.
        ports.queue = Arc::new(CachedQueue::new(ports.queue, clock, settings));
    }
    let probe = store.clone();
    Ok(Store { ports, readiness: Arc::new(move || probe.ping()), postgres: Some(store) })
}

/// Creates the database if missing, connects, and runs pending migrations.
///
/// # Errors
/// When the server cannot be reached or a migration fails.
pub fn prepare_database(db: &DatabaseSettings) -> anyhow::Result<PgStore> {
    let cfg = db.pg_config();
    adapters_postgres::ensure_database(&cfg.url).context("creating the database")?;
    let store = PgStore::connect(&cfg).context("connecting to the database")?;
    let applied = store.run_migrations().context("running migrations")?;
    tracing::info!(applied = applied.len(), "database schema up to date");
    Ok(store)
}
