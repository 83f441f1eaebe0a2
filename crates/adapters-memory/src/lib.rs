//! In-memory adapter: every storage port of the domain (`QueueStore`, `SettingsStore`,
//! `CatalogueStore`, `ReservationStore`, `AccountStore`, `PaymentStore`, `IdempotencyStore`)
//! over one [`MemoryStore`].
//!
//! It backs unit and API tests, demos and the in-memory mode of the binary, and it is held to
//! the same conformance suite (`port-tests`) as the PostgreSQL and Redis adapters: it is the
//! reference implementation the others are compared with. All state sits behind one mutex, so
//! every port call is one critical section, trivially atomic and linearizable: one seat hold
//! wins, no charge is lost, admission runs once per interval, a token pays once, and a
//! concurrent duplicate of a keyed request finds the first one's record (so this store never
//! answers `InFlight`). A payment reads, decides and applies under that lock, checking
//! everything before its first write, so an `Err` leaves nothing behind.
//!
//! The store's clock (on which admission and token expiry are timed, as a database's `now()`
//! would be) is the clock given to [`MemoryStore::ports`].
//!
//! Admission writes no token, as on PostgreSQL and Redis: a tick moves its line's cursor and
//! records itself once, `(after, through, at, expires_at)`, so it costs the same for N = 1 and
//! N = 100,000; a token stored WAITING at or below the cursor reads ACTIVE with its record's
//! `at` and `expires_at`, and the ACTIVE count is kept per record, not walked over tokens. The
//! per-token facts (a payment's use-up, the sweep's expiry, a lapsed token's re-join, a skip
//! for absence) are written, and a record goes once every token in it is written. The rule
//! and what is written when are in the `line` module's docs.
//!
//! # Layout
//! - [`MemoryStore`]: the shared state, the ports, the failure switch and readiness probe.
//! - `state`: the data and what each port call does to it inside the lock.
//! - `line`: one waiting line, its admission records and how a token's state is derived.
//! - `ports`: the trait implementations, thin wrappers that take the lock and delegate.

mod line;
mod ports;
mod state;

use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use domain::clock::Clock;
use domain::ports::StoreError;
use domain::queue::QueueSettings;
use domain::random::Randomness;
use domain::service::Ports;

use crate::ports::{MemoryLines, MemoryPorts};
use crate::state::State;
use domain::room::RoomId;

/// One in-memory store. Clones share the same state.
#[derive(Clone, Debug)]
pub struct MemoryStore {
    inner: Arc<Mutex<State>>,
}

impl Default for MemoryStore {
    fn default() -> Self {
        Self::new()
    }
}

impl MemoryStore {
    /// An empty store whose waiting-room settings start as [`QueueSettings::default`].
    #[must_use]
    pub fn new() -> Self {
        Self::with_settings(QueueSettings::default())
    }

    /// An empty store whose waiting-room settings start as `settings` (configuration's values,
    /// in force until an operator changes them).
    #[must_use]
    pub fn with_settings(settings: QueueSettings) -> Self {
        Self { inner: Arc::new(Mutex::new(State::new(settings))) }
    }

    /// Every port backed by this store. `clock` is both the domain's clock and the store's own
    /// (admission and token expiry are timed on it); `random` makes token values and ids.
    #[must_use]
    pub fn ports(&self, clock: Arc<dyn Clock>, random: Arc<dyn Randomness>) -> Ports {
        let ports = Arc::new(MemoryPorts::new(self.clone(), clock.clone(), RoomId::main()));
        Ports {
            queue: ports.clone(),
            settings: ports.clone(),
            catalogue: ports.clone(),
            reservations: ports.clone(),
            accounts: ports.clone(),
            payments: ports.clone(),
            idempotency: ports.clone(),
            audit: ports.clone(),
            rooms: ports,
            lines: Arc::new(MemoryLines { store: self.clone(), clock: clock.clone() }),
            clock,
            random,
        }
    }

    /// Failure switch for tests: while `Some`, every port call returns this error and changes
    /// nothing.
    pub fn set_failure(&self, failure: Option<StoreError>) {
        self.lock().failure = failure;
    }

    /// Readiness probe.
    ///
    /// # Errors
    /// The failure switch's error while it is set.
    pub fn ping(&self) -> Result<(), StoreError> {
        self.lock().check()
    }

    /// The state, locked. A thread that panicked while holding the lock left no half-made
    /// change behind (every mutation checks all it can refuse before its first write, and the
    /// writes after that cannot fail), so the poisoned state is still consistent and is used.
    fn lock(&self) -> MutexGuard<'_, State> {
        self.inner.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// The state, locked, unless the failure switch is set.
    fn open(&self) -> Result<MutexGuard<'_, State>, StoreError> {
        let guard = self.lock();
        guard.check()?;
        Ok(guard)
    }

    /// The state, locked, for a write: a write applied under this lock is this store's
    /// commit, so it is the commit point of `domain::call`, refused when the caller has given
    /// up (as the PostgreSQL adapter refuses to send a COMMIT).
    fn write(&self) -> Result<MutexGuard<'_, State>, StoreError> {
        let guard = self.open()?;
        if !domain::call::commit_point() {
            return Err(StoreError::Timeout("the caller gave up before the write".into()));
        }
        Ok(guard)
    }
}
