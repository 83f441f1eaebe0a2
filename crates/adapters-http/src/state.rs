//! What every handler shares, built once by the app with [`ApiState::builder`]: the use cases,
//! the readiness probe, the store slots, the body timeout, the operator key, the issue rate
//! limit with the trusted proxies, and the metrics hooks.
//!
//! # Store slots
//! Store work is synchronous (diesel, r2d2, the Redis client) and runs on actix's blocking
//! pool, but never more of it at once than [`ApiStateBuilder::store_slots`] (the app passes
//! `STORE_CALLS_AT_ONCE`): a `tokio::sync::Semaphore` permit is taken on the HTTP worker before
//! each hop and released on the blocking thread when the call returns. So the database's cores
//! never see more runnable backends than they can serve, and a burst waits in the semaphore's
//! fair (FIFO) queue instead of in the operating system's run queue. Waiting for a permit is
//! bounded by [`ApiStateBuilder::slot_wait`]: past it the request is answered 503
//! `UNAVAILABLE`, and nothing was started.
//!
//! Token issue has slots of its own ([`ApiStateBuilder::issue_slots`], the app passes the
//! pool's size): an issue on PostgreSQL waits for the group commit of its batch, which one
//! batcher thread runs on one connection for every issue waiting, so the issues in flight are
//! parked, not running, and their number is the size of the next batch. Under the general
//! slots they would cap the batch, and every issue waiting would hold a slot a read needs.
//!
//! Why the general slots are few (4 by default) while the pool is larger: every store call in
//! flight is a database backend that wants a core. On the 2-core bench machine 16 of them (the
//! pool's size, which was the slot count) gave polls of ACTIVE tokens the same throughput as 4
//! but p99 60-70 ms and max 300 ms against 16-18 ms and 120-140 ms: past a few per core the
//! backends only take turns on the cores, and one preempted while holding a lock stalls the
//! rest. The connections beyond the slots serve the issue batcher, the scheduler and the
//! caches' keeper, so those never wait behind requests for a connection.
//!
//! # Calls without the hop
//! The front door's queue calls on a store with a non-blocking client (joining a line and
//! polling a token, on Redis: `domain::service::front`) are awaited on the HTTP worker itself
//! (`ApiState::nonblocking`): no store slot (slots bound the blocking threads, and such a call
//! holds none; its connection pipelines every call of its worker), no hop. They keep every other
//! promise of this module: the store gate, the deadline below with the same commit agreement
//! (the watch is handed to the adapter, which asks it before sending its write), the request's
//! span (the handler's future, and so the call, runs inside it), and the error metrics (the same
//! `StoreError` mapping). `store_calls_total{path}` counts both paths.
//!
//! # Deadline
//! A store call normally ends by itself: the adapters bound it with lock and statement
//! timeouts and a commit budget. A store server that stops answering without closing its
//! connections (a frozen process, a network path that acknowledges and delivers nothing) would
//! still hold the call, so once [`ApiStateBuilder::store_deadline`] has passed since the request
//! asked for a slot, the request *abandons* the call and answers 503; the call goes on on its
//! blocking thread, holding its slot, until it ends on its own. Abandoning and committing are
//! agreed through one state per call (`domain::call::CommitWatch`): adapters ask it right
//! before every irrevocable write and roll back when the caller has given up, so 503 still
//! means nothing was done. When a COMMIT was already on its way, the request cannot abandon the
//! call: it waits for the real outcome (up to [`ApiStateBuilder::commit_wait`] more; past that,
//! 500 with the outcome unknown) rather than answer a 503 that might be false.

use std::fmt;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use actix_web::web;
use domain::call::CommitWatch;
use domain::error::StoreError;
use domain::service::{ActiveUser, Ticketing};
use ipnet::IpNet;
use metrics_exporter_prometheus::PrometheusHandle;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;
use tokio::sync::Semaphore;

use crate::client::TrustedProxies;
use crate::error::ApiError;
use crate::extract::Bearer;
use crate::identity::Identity;
use crate::limit::IssueLimiter;

/// Whether the stores can serve requests right now (`GET /health/ready`). The app wires the
/// store adapters' pings; any `Fn() -> Result<(), StoreError>` will do.
pub trait Readiness: Send + Sync {
    /// `Ok` when every store answers.
    ///
    /// # Errors
    /// [`StoreError::Unavailable`] or [`StoreError::Timeout`] when one cannot be reached in
    /// time (answered 503), [`StoreError::Internal`] when it answers wrongly (answered 500).
    fn check(&self) -> Result<(), StoreError>;
}

impl<F> Readiness for F
where
    F: Fn() -> Result<(), StoreError> + Send + Sync,
{
    fn check(&self) -> Result<(), StoreError> {
        self()
    }
}

/// Connections of the database pool, for `db_pool_connections{state}` at scrape time.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct PoolConnections {
    /// Open and not in use.
    pub idle: u32,
    /// Lent out to a request or the scheduler.
    pub busy: u32,
}

/// Reads the pool's connection counts (r2d2: `pool.state()`; `busy = connections - idle`).
pub type PoolGauge = dyn Fn() -> PoolConnections + Send + Sync;

/// Defaults of the builder.
pub mod defaults {
    use std::time::Duration;

    /// Store calls in flight at once, token issue apart (the app passes `STORE_CALLS_AT_ONCE`).
    pub const STORE_SLOTS: usize = 4;
    /// Token issues in flight at once (the app passes its database pool's size).
    pub const ISSUE_SLOTS: usize = 16;
    /// Longest wait for a store slot before 503.
    pub const SLOT_WAIT: Duration = Duration::from_secs(1);
    /// Longest wait for a store call, slot included, before 503 (the contract's 5 s, less the
    /// time to answer).
    pub const STORE_DEADLINE: Duration = Duration::from_millis(4_500);
    /// How much longer a call that was committing when the deadline passed is waited for
    /// before its outcome is reported unknown (500).
    pub const COMMIT_WAIT: Duration = Duration::from_secs(30);
    /// Longest wait for a request body to arrive whole before 408.
    pub const BODY_TIMEOUT: Duration = Duration::from_secs(5);
    /// Longest wait for the readiness probe before 503.
    pub const READY_TIMEOUT: Duration = Duration::from_secs(3);
    /// Most client addresses the issue rate limit tracks at once.
    pub const RATE_KEYS: usize = 100_000;
    /// How often request metrics' histograms are drained between scrapes.
    pub const UPKEEP_EVERY: Duration = Duration::from_secs(5);
}

/// The operator key, kept only as its SHA-256 digest.
struct AdminKey {
    digest: [u8; 32],
    actor: String,
}

impl AdminKey {
    fn new(token: &str) -> Self {
        let digest: [u8; 32] = Sha256::digest(token.as_bytes()).into();
        // Four bytes of the digest name the key in logs without revealing it.
        let actor = digest[..4].iter().map(|b| format!("{b:02x}")).collect();
        Self { digest, actor }
    }

    /// Compares in constant time: both sides are hashed first, so neither the length nor any
    /// prefix of the secret shows in the timing.
    fn matches(&self, presented: &str) -> bool {
        let presented: [u8; 32] = Sha256::digest(presented.as_bytes()).into();
        presented.ct_eq(&self.digest).into()
    }
}

struct Inner {
    ticketing: Ticketing,
    readiness: Arc<dyn Readiness>,
    slots: Arc<Semaphore>,
    /// Slots of token issue (see the module docs).
    issue_slots: Arc<Semaphore>,
    slot_wait: Duration,
    store_deadline: Duration,
    commit_wait: Duration,
    body_timeout: Duration,
    ready_timeout: Duration,
    admin: Option<AdminKey>,
    identity: Option<Identity>,
    issue_limit: Option<IssueLimiter>,
    proxies: TrustedProxies,
    metrics: Option<PrometheusHandle>,
    pool: Option<Arc<PoolGauge>>,
    /// While `false`, store calls are answered 503 without being started.
    open: Option<Arc<AtomicBool>>,
    /// When histograms were last drained, in ms since `started`.
    last_upkeep_ms: AtomicU64,
    started: Instant,
    /// The buyers' list of rooms (`GET /rooms`), kept [`ROOMS_LISTING_TTL`]: one read per
    /// room, so a page polling it must not cost a read per room per buyer.
    rooms_listing: std::sync::Mutex<Option<(Instant, Arc<[domain::service::RoomView]>)>>,
    /// The rooms' recent figures for the operator's console (see [`crate::history`]).
    history: crate::history::RoomHistory,
    /// This instance's name in the console: host name and process id.
    instance: String,
    /// Store calls made on the blocking pool, and awaited on the worker.
    calls: [AtomicU64; 2],
}

/// How many store calls an [`ApiState`] made, by path (see the module docs).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct StoreCalls {
    /// Hops to the blocking pool.
    pub blocking: u64,
    /// Calls awaited on the HTTP worker.
    pub nonblocking: u64,
}

/// How long the buyers' list of rooms is answered from memory: like a poll's position, at
/// most half a second behind the store.
pub const ROOMS_LISTING_TTL: Duration = Duration::from_millis(500);

/// The state behind every handler. Cloning is cheap (one `Arc`).
#[derive(Clone)]
pub struct ApiState(Arc<Inner>);

/// Builds an [`ApiState`]; every setting but the use cases has a default.
#[must_use]
pub struct ApiStateBuilder {
    inner: Inner,
    store_slots: usize,
    issue_slots: usize,
    rate_per_min: u32,
    rate_keys: usize,
}

impl ApiState {
    /// Starts a state for `ticketing`: readiness always ok, [`defaults`] for the rest, no
    /// operator API, no rate limit, no trusted proxy, no metrics.
    pub fn builder(ticketing: Ticketing) -> ApiStateBuilder {
        ApiStateBuilder {
            inner: Inner {
                ticketing,
                readiness: Arc::new(|| Ok(())),
                slots: Arc::new(Semaphore::new(defaults::STORE_SLOTS)),
                issue_slots: Arc::new(Semaphore::new(defaults::ISSUE_SLOTS)),
                slot_wait: defaults::SLOT_WAIT,
                store_deadline: defaults::STORE_DEADLINE,
                commit_wait: defaults::COMMIT_WAIT,
                body_timeout: defaults::BODY_TIMEOUT,
                ready_timeout: defaults::READY_TIMEOUT,
                admin: None,
                identity: None,
                issue_limit: None,
                proxies: TrustedProxies::default(),
                metrics: None,
                pool: None,
                open: None,
                last_upkeep_ms: AtomicU64::new(0),
                started: Instant::now(),
                rooms_listing: std::sync::Mutex::default(),
                history: crate::history::RoomHistory::default(),
                instance: crate::history::instance_name(),
                calls: [AtomicU64::new(0), AtomicU64::new(0)],
            },
            store_slots: defaults::STORE_SLOTS,
            issue_slots: defaults::ISSUE_SLOTS,
            rate_per_min: 0,
            rate_keys: defaults::RATE_KEYS,
        }
    }

    /// The use cases.
    #[must_use]
    pub fn ticketing(&self) -> &Ticketing {
        &self.0.ticketing
    }

    /// How many store calls this state made, by path.
    #[must_use]
    pub fn store_calls(&self) -> StoreCalls {
        let [blocking, nonblocking] = &self.0.calls;
        StoreCalls { blocking: blocking.load(Ordering::Relaxed), nonblocking: nonblocking.load(Ordering::Relaxed) }
    }

    /// Every room with its line, from memory when read less than [`ROOMS_LISTING_TTL`] ago.
    ///
    /// # Errors
    /// As [`ApiState::store`].
    pub(crate) async fn rooms_listing(&self) -> Result<Arc<[domain::service::RoomView]>, ApiError> {
        let lock = || self.0.rooms_listing.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        if let Some((at, rooms)) = lock().as_ref() {
            if at.elapsed() < ROOMS_LISTING_TTL {
                return Ok(rooms.clone());
            }
        }
        let started = Instant::now();
        let rooms: Arc<[domain::service::RoomView]> = self.store(|t| t.rooms_overview()).await?.into();
        let mut held = lock();
        // A slower read never replaces a newer one.
        if held.as_ref().is_none_or(|(at, _)| *at <= started) {
            *held = Some((started, rooms.clone()));
        }
        Ok(rooms)
    }

    /// Reads every room once and records its figures in this instance's history (the app
    /// calls it every [`crate::history::SAMPLE_EVERY`]).
    ///
    /// # Errors
    /// As [`ApiState::store`]; nothing is recorded then.
    pub async fn sample_rooms(&self) -> Result<(), ApiError> {
        let rooms = self.store(|t| t.rooms_overview()).await?;
        self.0.history.record(&rooms);
        Ok(())
    }

    /// Samples the rooms every [`crate::history::SAMPLE_EVERY`] until `stop` turns `true` (or
    /// its sender is gone). A failed read is skipped (logged at debug level): the chart shows a
    /// gap, the line goes on.
    pub async fn run_sampler(self, mut stop: tokio::sync::watch::Receiver<bool>) {
        let mut every = tokio::time::interval(crate::history::SAMPLE_EVERY);
        every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = every.tick() => {
                    if let Err(e) = self.sample_rooms().await {
                        tracing::debug!(error = %e, "the console's sample of the rooms failed");
                    }
                }
                changed = stop.changed() => {
                    if changed.is_err() || *stop.borrow() {
                        return;
                    }
                }
            }
        }
    }

    pub(crate) fn history(&self) -> &crate::history::RoomHistory {
        &self.0.history
    }

    pub(crate) fn instance(&self) -> &str {
        &self.0.instance
    }

    /// Drops the buyers' list of rooms after an operator's change through this instance.
    pub(crate) fn forget_rooms_listing(&self) {
        *self.0.rooms_listing.lock().unwrap_or_else(std::sync::PoisonError::into_inner) = None;
    }

    pub(crate) fn body_timeout(&self) -> Duration {
        self.0.body_timeout
    }

    pub(crate) fn proxies(&self) -> &TrustedProxies {
        &self.0.proxies
    }

    pub(crate) fn issue_limit(&self) -> Option<&IssueLimiter> {
        self.0.issue_limit.as_ref()
    }

    pub(crate) fn metrics(&self) -> Option<&PrometheusHandle> {
        self.0.metrics.as_ref()
    }

    pub(crate) fn pool(&self) -> Option<&PoolGauge> {
        self.0.pool.as_deref()
    }

    /// Drains the recorder's histograms at most every [`defaults::UPKEEP_EVERY`], so their
    /// memory stays bounded even when nobody scrapes (the exporter keeps raw samples until
    /// upkeep folds them into buckets).
    pub(crate) fn maybe_upkeep(&self) {
        let Some(handle) = &self.0.metrics else { return };
        let now = u64::try_from(self.0.started.elapsed().as_millis()).unwrap_or(u64::MAX);
        let last = self.0.last_upkeep_ms.load(Ordering::Relaxed);
        let due = now.saturating_sub(last) >= u64::try_from(defaults::UPKEEP_EVERY.as_millis()).unwrap_or(u64::MAX);
        if due && self.0.last_upkeep_ms.compare_exchange(last, now, Ordering::Relaxed, Ordering::Relaxed).is_ok() {
            handle.run_upkeep();
        }
    }

    /// Whether the operator API is on.
    #[must_use]
    pub fn admin_enabled(&self) -> bool {
        self.0.admin.is_some()
    }

    /// The verifier of signed identities, when identity is on (`AUTH_ISSUER`).
    #[must_use]
    pub fn identity(&self) -> Option<&Identity> {
        self.0.identity.as_ref()
    }

    /// The operator's short id if `presented` is the operator token; `None` otherwise (and
    /// when the operator API is off).
    pub(crate) fn operator(&self, presented: &str) -> Option<String> {
        self.0.admin.as_ref().filter(|k| k.matches(presented)).map(|k| k.actor.clone())
    }

    /// Runs a store call on the blocking pool once a store slot is free (see the module
    /// header), inside the request's span so its logs stay attributed to the request.
    ///
    /// # Errors
    /// 503 `UNAVAILABLE` when no slot came free within the slot wait (nothing was started) or
    /// the store did not answer by the store deadline (the call can no longer commit, see the
    /// module docs); the call's own error, mapped to problem details; 500 if the pool failed.
    pub(crate) async fn store<T, E, F>(&self, f: F) -> Result<T, ApiError>
    where
        F: FnOnce(&Ticketing) -> Result<T, E> + Send + 'static,
        T: Send + 'static,
        E: Into<ApiError> + Send + 'static,
    {
        self.store_in(&self.0.slots, f).await
    }

    /// [`ApiState::store`] for token issue, with the issue slots (see the module docs).
    ///
    /// # Errors
    /// As [`ApiState::store`].
    pub(crate) async fn issue<T, E, F>(&self, f: F) -> Result<T, ApiError>
    where
        F: FnOnce(&Ticketing) -> Result<T, E> + Send + 'static,
        T: Send + 'static,
        E: Into<ApiError> + Send + 'static,
    {
        self.store_in(&self.0.issue_slots, f).await
    }

    async fn store_in<T, E, F>(&self, slots: &Arc<Semaphore>, f: F) -> Result<T, ApiError>
    where
        F: FnOnce(&Ticketing) -> Result<T, E> + Send + 'static,
        T: Send + 'static,
        E: Into<ApiError> + Send + 'static,
    {
        if self.0.open.as_ref().is_some_and(|open| !open.load(Ordering::Acquire)) {
            return Err(ApiError::unavailable(&"the stores are not ready yet (schema not migrated)"));
        }
        let asked = std::time::Instant::now();
        self.0.calls[0].fetch_add(1, Ordering::Relaxed);
        crate::metrics::record_store_call(crate::metrics::PATH_BLOCKING);
        let permit = match actix_web::rt::time::timeout(self.0.slot_wait, slots.clone().acquire_owned()).await {
            Ok(Ok(permit)) => permit,
            Ok(Err(closed)) => return Err(ApiError::internal(&closed)),
            Err(_elapsed) => {
                return Err(ApiError::unavailable(&format_args!(
                    "no store slot came free within {:?}",
                    self.0.slot_wait
                )))
            }
        };
        let state = self.clone();
        let span = tracing::Span::current();
        let watch = CommitWatch::new();
        let watched = watch.clone();
        let call = web::block(move || {
            // Held until the call returns, on this thread, even if the client has gone.
            let _permit = permit;
            span.in_scope(|| watched.attach(|| f(&state.0.ticketing)))
        });
        let mut call = std::pin::pin!(call);
        let left = self.0.store_deadline.saturating_sub(asked.elapsed());
        if let Ok(outcome) = actix_web::rt::time::timeout(left, &mut call).await {
            return outcome?.map_err(Into::into);
        }
        if watch.abandon() {
            // The call has not begun to commit, and now never will (the adapters ask the watch
            // before every irrevocable write): nothing was done.
            return Err(ApiError::unavailable(&format_args!(
                "the store did not answer within {:?}; the call was abandoned before it could commit",
                self.0.store_deadline
            )));
        }
        // The call sent its COMMIT and the store froze before answering: "nothing was done"
        // would be a guess. Wait for the real outcome, as long as `commit_wait` allows.
        tracing::warn!("the store stopped answering while this call was committing; waiting for its outcome");
        match actix_web::rt::time::timeout(self.0.commit_wait, &mut call).await {
            Ok(outcome) => outcome?.map_err(Into::into),
            Err(_elapsed) => Err(ApiError::internal(&format_args!(
                "the store stopped answering for {:?} while this call was committing: its outcome is unknown",
                self.0.store_deadline + self.0.commit_wait
            ))),
        }
    }

    /// Awaits a store call made without blocking, on this worker (see the module docs): `call`
    /// is the use case's future, `watch` the clone of the watch it hands to the adapter.
    ///
    /// # Errors
    /// 503 `UNAVAILABLE` when the store gate is closed (nothing was started) or the store did
    /// not answer by the store deadline and the call had not begun to write (it is dropped:
    /// nothing was done); past the deadline, a call that was writing is awaited up to the
    /// commit wait (500 with the outcome unknown beyond it); the call's own error otherwise.
    pub(crate) async fn nonblocking<T, E>(
        &self,
        call: impl std::future::Future<Output = Result<T, E>>,
        watch: &CommitWatch,
    ) -> Result<T, ApiError>
    where
        E: Into<ApiError>,
    {
        if self.0.open.as_ref().is_some_and(|open| !open.load(Ordering::Acquire)) {
            return Err(ApiError::unavailable(&"the stores are not ready yet (schema not migrated)"));
        }
        self.0.calls[1].fetch_add(1, Ordering::Relaxed);
        crate::metrics::record_store_call(crate::metrics::PATH_ASYNC);
        let mut call = std::pin::pin!(call);
        if let Ok(outcome) = actix_web::rt::time::timeout(self.0.store_deadline, &mut call).await {
            return outcome.map_err(Into::into);
        }
        if watch.abandon() {
            // The adapter had not begun to write, and now never will (it asks the watch right
            // before sending): dropping the call leaves nothing done.
            return Err(ApiError::unavailable(&format_args!(
                "the store did not answer within {:?}; the call was abandoned before it could write",
                self.0.store_deadline
            )));
        }
        tracing::warn!("the store stopped answering while this call was writing; waiting for its outcome");
        match actix_web::rt::time::timeout(self.0.commit_wait, &mut call).await {
            Ok(outcome) => outcome.map_err(Into::into),
            Err(_elapsed) => Err(ApiError::internal(&format_args!(
                "the store stopped answering for {:?} while this call was writing: its outcome is unknown",
                self.0.store_deadline + self.0.commit_wait
            ))),
        }
    }

    /// [`ApiState::store`] for a call that needs an ACTIVE token: the token is checked and the
    /// call made in the same hop, with one slot.
    ///
    /// # Errors
    /// `TOKEN_INVALID`, `TOKEN_EXPIRED`, `TOKEN_NOT_ACTIVE`, or as [`ApiState::store`].
    pub(crate) async fn as_active<T, E, F>(&self, bearer: Bearer, f: F) -> Result<T, ApiError>
    where
        F: FnOnce(&Ticketing, &ActiveUser) -> Result<T, E> + Send + 'static,
        T: Send + 'static,
        E: Into<ApiError> + Send + 'static,
    {
        self.store(move |t| {
            let who = t.authorize(bearer.as_str()).map_err(ApiError::from)?;
            f(t, &who).map_err(Into::into)
        })
        .await
    }

    /// Runs the readiness probe on the blocking pool, outside the store slots (an instance
    /// busy with requests is still ready), answering 503 if it takes longer than the ready
    /// timeout. The probe changes nothing, so answering it on a timer is safe.
    pub(crate) async fn check_ready(&self) -> Result<(), ApiError> {
        let state = self.clone();
        let probe = web::block(move || state.0.readiness.check());
        match actix_web::rt::time::timeout(self.0.ready_timeout, probe).await {
            Ok(result) => Ok(result??),
            Err(_elapsed) => Err(ApiError::unavailable(&"readiness probe timed out")),
        }
    }
}

impl ApiStateBuilder {
    /// The readiness probe of `GET /health/ready`.
    pub fn readiness(mut self, probe: impl Readiness + 'static) -> Self {
        self.inner.readiness = Arc::new(probe);
        self
    }

    /// Most store calls in flight at once, token issue apart (at least 1; see the module docs).
    pub fn store_slots(mut self, slots: usize) -> Self {
        self.store_slots = slots.max(1);
        self
    }

    /// Most token issues in flight at once (at least 1): the largest batch a group commit
    /// can take (see the module docs).
    pub fn issue_slots(mut self, slots: usize) -> Self {
        self.issue_slots = slots.max(1);
        self
    }

    /// Longest wait for a store slot before answering 503 (nothing started).
    pub fn slot_wait(mut self, wait: Duration) -> Self {
        self.inner.slot_wait = wait;
        self
    }

    /// Longest wait for a store call, its slot included, before answering 503: keep it longer
    /// than the slot wait plus the store adapters' commit budget (see the module docs).
    pub fn store_deadline(mut self, deadline: Duration) -> Self {
        self.inner.store_deadline = deadline;
        self
    }

    /// How much longer to wait, past the store deadline, for a call that was committing.
    pub fn commit_wait(mut self, wait: Duration) -> Self {
        self.inner.commit_wait = wait;
        self
    }

    /// Longest wait for a request body to arrive whole before answering 408.
    pub fn body_timeout(mut self, timeout: Duration) -> Self {
        self.inner.body_timeout = timeout;
        self
    }

    /// Longest wait for the readiness probe before answering 503.
    pub fn ready_timeout(mut self, timeout: Duration) -> Self {
        self.inner.ready_timeout = timeout;
        self
    }

    /// `ADMIN_TOKEN`: turns on the operator API (and puts `/metrics` behind it). `None` or an
    /// empty token leaves it off: every `/admin/*` answers 404.
    pub fn admin_token(mut self, token: Option<&str>) -> Self {
        self.inner.admin = token.filter(|t| !t.is_empty()).map(AdminKey::new);
        self
    }

    /// `AUTH_ISSUER` and the rest: turns on signed identities for the routes that name a user
    /// (see [`crate::identity`]). The app runs [`Identity::run_refresher`] beside the server.
    pub fn identity(mut self, identity: Option<Identity>) -> Self {
        self.inner.identity = identity;
        self
    }

    /// `ISSUE_RATE_PER_MIN`: most `POST /queue/tokens` per client address per minute; 0 is no
    /// limit.
    pub fn issue_rate_per_min(mut self, per_min: u32) -> Self {
        self.rate_per_min = per_min;
        self
    }

    /// Most client addresses the rate limit tracks at once; past it, new addresses share one
    /// allowance (see [`crate::limit`]).
    pub fn issue_rate_keys(mut self, keys: usize) -> Self {
        self.rate_keys = keys.max(1);
        self
    }

    /// `TRUSTED_PROXIES`: networks whose `X-Forwarded-For` names the client.
    pub fn trusted_proxies(mut self, nets: impl IntoIterator<Item = IpNet>) -> Self {
        self.inner.proxies = TrustedProxies::new(nets);
        self
    }

    /// The recorder handle `GET /metrics` renders (from [`crate::metrics::install_recorder`]).
    /// Without one, `/metrics` answers 404.
    pub fn metrics(mut self, handle: PrometheusHandle) -> Self {
        self.inner.metrics = Some(handle);
        self
    }

    /// A switch that keeps store calls closed (503, nothing started) until it turns `true`:
    /// the app opens it once the database schema is migrated, so a request that reaches a
    /// database created a moment ago never meets a missing table.
    pub fn store_gate(mut self, open: Arc<AtomicBool>) -> Self {
        self.inner.open = Some(open);
        self
    }

    /// How to read the database pool's connections at scrape time.
    pub fn pool_gauge(mut self, gauge: impl Fn() -> PoolConnections + Send + Sync + 'static) -> Self {
        self.inner.pool = Some(Arc::new(gauge));
        self
    }

    /// The state.
    #[must_use]
    pub fn build(mut self) -> ApiState {
        self.inner.slots = Arc::new(Semaphore::new(self.store_slots));
        self.inner.issue_slots = Arc::new(Semaphore::new(self.issue_slots));
        self.inner.issue_limit = IssueLimiter::per_minute(self.rate_per_min, self.rate_keys);
        ApiState(Arc::new(self.inner))
    }
}

impl fmt::Debug for ApiState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ApiState")
            .field("ticketing", &self.0.ticketing)
            .field("store_slots_free", &self.0.slots.available_permits())
            .field("slot_wait", &self.0.slot_wait)
            .field("store_deadline", &self.0.store_deadline)
            .field("commit_wait", &self.0.commit_wait)
            .field("body_timeout", &self.0.body_timeout)
            .field("admin", &self.0.admin.is_some())
            .field("identity", &self.0.identity)
            .field("issue_limit", &self.0.issue_limit)
            .field("proxies", &self.0.proxies)
            .finish_non_exhaustive()
    }
}

impl fmt::Debug for ApiStateBuilder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ApiStateBuilder").field("store_slots", &self.store_slots).finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_operator_key_matches_only_itself_and_names_itself_by_its_digest() {
        let key = AdminKey::new("s3cret");
        assert!(key.matches("s3cret"));
        assert!(!key.matches("s3cre"));
        assert!(!key.matches("s3cret "));
        assert!(!key.matches(""));
        assert_eq!(key.actor.len(), 8);
        assert!(!key.actor.contains("s3"));
    }
}
