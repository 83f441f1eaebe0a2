//! The port traits, implemented on [`MemoryStore`]: each call takes the lock (failing while the
//! failure switch is set) and delegates to [`crate::state::State`].

use domain::account::{CreditOutcome, LedgerEntry};
use domain::catalogue::{Concert, ScheduleSummary, SeatRecord};
use domain::error::PayError;
use domain::ids::{ConcertId, LedgerEntryId, ReservationId, ScheduleId, UserId};
use domain::money::Won;
use domain::payment::Payment;
use domain::ports::{
    AccountStore, CatalogueStore, IssueOutcome, PaymentUnitOfWork, PaymentWork, QueueStore, ReservationStore,
    StoreError,
};
use domain::queue::{AdmissionOutcome, AdmissionPolicy, QueueCursor, QueueToken, TokenValue};
use domain::reservation::{HoldOutcome, HoldRequest, Reservation};
use time::OffsetDateTime;

use crate::state::Tx;
use crate::MemoryStore;

impl QueueStore for MemoryStore {
    fn issue(&self, user: UserId, value: TokenValue, now: OffsetDateTime) -> Result<IssueOutcome, StoreError> {
        self.open()?.issue(user, value, now)
    }

    fn find(&self, value: &TokenValue) -> Result<Option<QueueToken>, StoreError> {
        Ok(self.open()?.find_token(value))
    }

    fn find_with_cursor(&self, value: &TokenValue) -> Result<Option<(QueueToken, QueueCursor)>, StoreError> {
        let state = self.open()?;
        Ok(state.find_token(value).map(|t| (t, state.cursor())))
    }

    fn cursor(&self) -> Result<QueueCursor, StoreError> {
        Ok(self.open()?.cursor())
    }

    fn admit(&self, policy: &AdmissionPolicy, now: OffsetDateTime) -> Result<AdmissionOutcome, StoreError> {
        Ok(self.open()?.admit(policy, now))
    }

    fn expire_tokens(&self, now: OffsetDateTime) -> Result<u64, StoreError> {
        Ok(self.open()?.expire_tokens(now))
    }
}

impl CatalogueStore for MemoryStore {
    fn concerts(&self) -> Result<Vec<Concert>, StoreError> {
        Ok(self.open()?.concerts())
    }

    fn schedules(&self, concert: ConcertId, now: OffsetDateTime) -> Result<Option<Vec<ScheduleSummary>>, StoreError> {
        Ok(self.open()?.schedules(concert, now))
    }

    fn seats(&self, schedule: ScheduleId) -> Result<Option<Vec<SeatRecord>>, StoreError> {
        Ok(self.open()?.seats(schedule))
    }
}

impl ReservationStore for MemoryStore {
    fn hold(&self, req: &HoldRequest) -> Result<HoldOutcome, StoreError> {
        self.open()?.hold(req)
    }

    fn find(&self, id: ReservationId) -> Result<Option<Reservation>, StoreError> {
        Ok(self.open()?.find_reservation(id))
    }

    fn release_lapsed(&self, now: OffsetDateTime) -> Result<u64, StoreError> {
        Ok(self.open()?.release_lapsed(now))
    }
}

impl AccountStore for MemoryStore {
    fn balance(&self, user: UserId) -> Result<Won, StoreError> {
        Ok(self.open()?.balance(user))
    }

    fn credit(
        &self,
        user: UserId,
        amount: Won,
        limit: Won,
        entry: LedgerEntryId,
        at: OffsetDateTime,
    ) -> Result<CreditOutcome, StoreError> {
        self.open()?.credit(user, amount, limit, entry, at)
    }

    fn ledger(&self, user: UserId) -> Result<Vec<LedgerEntry>, StoreError> {
        Ok(self.open()?.ledger(user))
    }
}

impl PaymentUnitOfWork for MemoryStore {
    fn run(&self, work: &mut PaymentWork<'_>) -> Result<Payment, PayError> {
        let mut state = self.open()?;
        // The lock is held until the work is done, so the payment is serialised against every
        // other port call: the reservation, the balance and the token cannot move under it.
        let mut tx = Tx::begin(&mut state);
        let result = work(&mut tx);
        if result.is_ok() {
            tx.commit();
        }
        // Otherwise dropping `tx` undoes every write the work made.
        result
    }
}
