//! The model-based test of the whole service (`port_tests::model`) on the in-memory store: a
//! fresh store per case, its clock the case's.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, reason = "tests")]

use std::sync::Arc;

use adapters_local::OsRandom;
use adapters_memory::MemoryStore;
use domain::clock::ManualClock;
use domain::service::Ports;
use port_tests::model::ModelStore;
use port_tests::Harness;

struct Memory {
    store: MemoryStore,
    clock: ManualClock,
}

impl Harness for Memory {
    fn new_store(clock: ManualClock) -> Self {
        Self { store: MemoryStore::new(), clock }
    }

    fn ports(&self) -> Ports {
        self.store.ports(Arc::new(self.clock.clone()), Arc::new(OsRandom))
    }
}

impl ModelStore for Memory {}

port_tests::model_suite!(Memory, sequential = 512, steps = 64, concurrent = 256);

#[test]
fn an_issue_racing_an_admission_answers_as_of_after_it() {
    port_tests::model::regressions::an_issue_racing_an_admission_answers_as_of_after_it::<Memory>();
}

/// The model has teeth: stores with one planted bug each (a wrapper around the memory store)
/// fail the sequential model test within the memory budget, and shrink to a short sequence.
mod mutants {
    use std::panic::{catch_unwind, AssertUnwindSafe};
    use std::sync::Arc;

    use domain::account::{CreditOutcome, CreditRequest, LedgerEntry, LedgerQuery};
    use domain::clock::ManualClock;
    use domain::idempotency::{Claimed, IdempotencyGuard};
    use domain::ids::{ReservationId, UserId};
    use domain::money::Won;
    use domain::ports::{AccountStore, ReservationStore, StoreError};
    use domain::reservation::{HoldOutcome, HoldRequest, Reservation};
    use domain::service::Ports;
    use port_tests::model::{sequential_suite, Budget, ModelStore};
    use port_tests::Harness;
    use time::OffsetDateTime;

    use super::Memory;

    /// Holds without the hold limit.
    struct NoHoldLimit(Arc<dyn ReservationStore>);

    impl ReservationStore for NoHoldLimit {
        fn hold(&self, req: &HoldRequest) -> Result<HoldOutcome, StoreError> {
            self.0.hold(&HoldRequest { max_live_holds: u32::MAX, ..req.clone() })
        }

        fn find(&self, id: ReservationId) -> Result<Option<Reservation>, StoreError> {
            self.0.find(id)
        }

        fn release_lapsed(&self, now: OffsetDateTime, limit: u32) -> Result<u64, StoreError> {
            self.0.release_lapsed(now, limit)
        }
    }

    /// Credits one won past the balance limit.
    struct LimitOffByOne(Arc<dyn AccountStore>);

    impl AccountStore for LimitOffByOne {
        fn balance(&self, user: UserId) -> Result<Won, StoreError> {
            self.0.balance(user)
        }

        fn credit(
            &self,
            req: &CreditRequest,
            guard: Option<&IdempotencyGuard<'_>>,
        ) -> Result<Claimed<CreditOutcome>, StoreError> {
            self.0.credit(&CreditRequest { limit: Won::new(req.limit.get() + 1), ..*req }, guard)
        }

        fn ledger(&self, user: UserId, query: &LedgerQuery) -> Result<Option<Vec<LedgerEntry>>, StoreError> {
            self.0.ledger(user, query)
        }
    }

    /// The memory store with `wrap` applied to its ports.
    struct Mutant<const M: u8> {
        memory: Memory,
    }

    impl<const M: u8> Harness for Mutant<M> {
        fn new_store(clock: ManualClock) -> Self {
            Self { memory: Memory::new_store(clock) }
        }

        fn ports(&self) -> Ports {
            let ports = self.memory.ports();
            match M {
                0 => Ports { reservations: Arc::new(NoHoldLimit(ports.reservations.clone())), ..ports },
                _ => Ports { accounts: Arc::new(LimitOffByOne(ports.accounts.clone())), ..ports },
            }
        }
    }

    impl<const M: u8> ModelStore for Mutant<M> {}

    fn caught<H: ModelStore>() -> bool {
        let budget = Budget { cases: 512, steps: 64, threads: 4, steps_per_thread: 3, regressions: None };
        catch_unwind(AssertUnwindSafe(|| sequential_suite::<H>(&budget))).is_err()
    }

    #[test]
    fn a_store_that_ignores_the_hold_limit_is_caught() {
        assert!(caught::<Mutant<0>>(), "the model missed a store without the hold limit");
    }

    #[test]
    fn a_store_that_credits_past_the_balance_limit_is_caught() {
        assert!(caught::<Mutant<1>>(), "the model missed a store whose balance limit is one won off");
    }
}
