//! In-memory adapter: every domain port ([`QueueStore`], [`CatalogueStore`],
//! [`ReservationStore`], [`AccountStore`], [`PaymentUnitOfWork`]) over one [`MemoryStore`].
//!
//! It backs unit and API tests, demos and the `--store memory` mode, and it is held to the
//! same conformance suite (`port-tests`) as the PostgreSQL adapter. All state sits behind one
//! mutex: every port call is a critical section, which makes each one trivially atomic and
//! serialised against every other (one seat hold wins, no charge is lost, admission runs once
//! per interval). A payment runs its whole unit of work under that lock with an undo log, so an
//! `Err` from the work rolls back every write it made.
//!
//! # Layout
//! - [`MemoryStore`]: the shared state, seeding, the failure switch and readiness probe.
//! - `state`: the data and the rules each port applies to it inside the lock.
//! - `ports`: the trait implementations, thin wrappers that take the lock and delegate.

mod ports;
mod state;

use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use domain::clock::Clock;
use domain::demo::DemoCatalogue;
use domain::ports::{AccountStore, CatalogueStore, PaymentUnitOfWork, QueueStore, ReservationStore, StoreError};
use domain::queue::TokenGenerator;
use domain::service::Ports;

use crate::state::State;

/// One in-memory store. Clones share the same state.
#[derive(Clone, Debug, Default)]
pub struct MemoryStore {
    inner: Arc<Mutex<State>>,
}

impl MemoryStore {
    /// An empty store.
    #[must_use]
    pub fn new() -> Self {
        Self::default()
    }

    /// All ports backed by this store, reading `clock`, tokens from `tokens`.
    #[must_use]
    pub fn ports(&self, clock: Arc<dyn Clock>, tokens: Arc<dyn TokenGenerator>) -> Ports {
        let queue: Arc<dyn QueueStore> = Arc::new(self.clone());
        let catalogue: Arc<dyn CatalogueStore> = Arc::new(self.clone());
        let reservations: Arc<dyn ReservationStore> = Arc::new(self.clone());
        let accounts: Arc<dyn AccountStore> = Arc::new(self.clone());
        let payments: Arc<dyn PaymentUnitOfWork> = Arc::new(self.clone());
        Ports { queue, catalogue, reservations, accounts, payments, clock, tokens }
    }

    /// Inserts the catalogue's concerts, schedules and seats unless already there
    /// (idempotent); returns `true` if it inserted anything.
    pub fn seed(&self, catalogue: &DemoCatalogue) -> bool {
        self.lock().seed(catalogue)
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

    /// The state, locked. A thread that panicked while holding the lock leaves no half-made
    /// change behind (every mutation is a few assignments after all checks passed, and
    /// payments undo on unwind too), so the poisoned state is still consistent and is used.
    fn lock(&self) -> MutexGuard<'_, State> {
        self.inner.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// The state, locked, unless the failure switch is set.
    fn open(&self) -> Result<MutexGuard<'_, State>, StoreError> {
        let guard = self.lock();
        guard.check()?;
        Ok(guard)
    }
}
