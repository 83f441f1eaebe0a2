//! The port traits, implemented on [`MemoryPorts`]: each call takes the store's lock (failing
//! while the failure switch is set) and delegates to [`crate::state::State`]. Calls timed on
//! the store's clock read the clock the ports were built with.

use std::sync::Arc;

use domain::account::{CreditOutcome, CreditRequest, LedgerEntry, LedgerQuery};
use domain::audit::{AuditEntry, OperatorNote};
use domain::catalogue::{AddSchedule, Concert, NewConcert, NewSchedule, ScheduleSales, ScheduleSummary, SeatRecord};
use domain::clock::Clock;
use domain::error::PayError;
use domain::idempotency::{Claimed, IdempotencyGuard, IdempotencyKey, IdempotencyRecord};
use domain::ids::{ConcertId, ReservationId, ScheduleId, UserId};
use domain::money::Won;
use domain::payment::{PaymentRequest, Settlement};
use domain::ports::{
    AccountStore, AuditStore, CatalogueStore, ChangeRoom, Decide, IdempotencyStore, IssueOutcome, PaymentStore,
    QueueLines, QueueStore, ReservationStore, RoomStore, SettingsStore, StoreError,
};
use domain::queue::{
    AdmissionOutcome, AdmissionPolicy, QueueCursor, QueueSettings, QueueStats, QueueToken, SettingsPatch, TokenValue,
};
use domain::reservation::{HoldOutcome, HoldRequest, Reservation};
use domain::room::{CreateRoomOutcome, DrawOutcome, Room, RoomId, UpdateRoomOutcome};
use time::OffsetDateTime;

use crate::line::Line;
use crate::MemoryStore;

/// Every port of one [`MemoryStore`], with the store's clock.
pub(crate) struct MemoryPorts {
    store: MemoryStore,
    clock: Arc<dyn Clock>,
    /// The room whose line the queue port serves.
    room: RoomId,
}

impl std::fmt::Debug for MemoryPorts {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MemoryPorts").finish_non_exhaustive()
    }
}

impl MemoryPorts {
    pub(crate) fn new(store: MemoryStore, clock: Arc<dyn Clock>, room: RoomId) -> Self {
        Self { store, clock, room }
    }
}

/// The rooms' lines of one [`MemoryStore`].
pub(crate) struct MemoryLines {
    pub(crate) store: MemoryStore,
    pub(crate) clock: Arc<dyn Clock>,
}

impl QueueLines for MemoryLines {
    fn line(&self, room: &RoomId) -> Arc<dyn QueueStore> {
        Arc::new(MemoryPorts::new(self.store.clone(), self.clock.clone(), room.clone()))
    }
}

impl MemoryPorts {
    /// A value of another line is no token of this one.
    fn ours(&self, value: &TokenValue) -> bool {
        value.is_in(&self.room)
    }
}

impl QueueStore for MemoryPorts {
    fn issue(&self, user: UserId, value: TokenValue, now: OffsetDateTime) -> Result<IssueOutcome, StoreError> {
        if !self.ours(&value) {
            return Err(StoreError::Internal(format!("a token of another room issued in the line of {}", self.room)));
        }
        self.store.write()?.line_mut(&self.room).issue(user, value, now)
    }

    fn find(&self, value: &TokenValue) -> Result<Option<QueueToken>, StoreError> {
        let state = self.store.open()?;
        Ok(state.line(&self.room).filter(|_| self.ours(value)).and_then(|line| line.find_token(value)))
    }

    fn find_with_cursor(&self, value: &TokenValue) -> Result<Option<(QueueToken, QueueCursor)>, StoreError> {
        let state = self.store.open()?;
        let line = state.line(&self.room).filter(|_| self.ours(value));
        Ok(line.and_then(|line| line.find_token(value).map(|t| (t, line.cursor()))))
    }

    fn cursor(&self) -> Result<QueueCursor, StoreError> {
        Ok(self.store.open()?.line(&self.room).map(Line::cursor).unwrap_or_default())
    }

    fn admit(&self, policy: &AdmissionPolicy) -> Result<AdmissionOutcome, StoreError> {
        let mut state = self.store.write()?;
        // Read under the lock, so the instant of the decision is the instant of the write.
        Ok(state.line_mut(&self.room).admit(policy, self.clock.now()))
    }

    fn expire_tokens(&self, limit: u32) -> Result<u64, StoreError> {
        let mut state = self.store.write()?;
        Ok(state.line_mut(&self.room).expire_tokens(self.clock.now(), limit))
    }

    fn use_up(&self, value: &TokenValue, at: OffsetDateTime) -> Result<(), StoreError> {
        if self.ours(value) {
            self.store.write()?.line_mut(&self.room).use_up(value, at);
        }
        Ok(())
    }

    fn stats(&self) -> Result<QueueStats, StoreError> {
        let state = self.store.open()?;
        let now = self.clock.now();
        Ok(state.line(&self.room).map_or_else(|| Line::default().stats(now), |line| line.stats(now)))
    }

    fn ping(&self) -> Result<(), StoreError> {
        self.store.ping()
    }

    fn draw(&self, opens_at: OffsetDateTime, seed: u64) -> Result<DrawOutcome, StoreError> {
        let mut state = self.store.write()?;
        Ok(state.line_mut(&self.room).draw(opens_at, seed, self.clock.now()))
    }

    fn note_seen(&self, values: &[TokenValue], at: OffsetDateTime) -> Result<(), StoreError> {
        let mut state = self.store.write()?;
        state.line_mut(&self.room).note_seen(values, at);
        Ok(())
    }
}

impl RoomStore for MemoryPorts {
    fn rooms(&self) -> Result<Vec<Room>, StoreError> {
        Ok(self.store.open()?.rooms())
    }

    fn create_room(&self, room: &Room, note: Option<&OperatorNote>) -> Result<CreateRoomOutcome, StoreError> {
        Ok(self.store.write()?.create_room(room, note))
    }

    fn update_room(
        &self,
        id: &RoomId,
        change: &mut ChangeRoom<'_>,
        note: Option<&OperatorNote>,
    ) -> Result<UpdateRoomOutcome, StoreError> {
        Ok(self.store.write()?.update_room(id, change, note))
    }
}

impl SettingsStore for MemoryPorts {
    fn load(&self) -> Result<QueueSettings, StoreError> {
        Ok(self.store.open()?.settings())
    }

    fn update(
        &self,
        patch: &SettingsPatch,
        note: Option<&OperatorNote>,
    ) -> Result<(QueueSettings, QueueSettings), StoreError> {
        Ok(self.store.write()?.update_settings(patch, note))
    }
}

impl CatalogueStore for MemoryPorts {
    fn concerts(&self) -> Result<Vec<Concert>, StoreError> {
        Ok(self.store.open()?.concerts())
    }

    fn schedules(&self, concert: ConcertId, now: OffsetDateTime) -> Result<Option<Vec<ScheduleSummary>>, StoreError> {
        Ok(self.store.open()?.schedules(concert, now))
    }

    fn seats(&self, schedule: ScheduleId) -> Result<Option<Vec<SeatRecord>>, StoreError> {
        Ok(self.store.open()?.seats(schedule))
    }

    fn create_concert(&self, concert: &NewConcert, note: Option<&OperatorNote>) -> Result<bool, StoreError> {
        self.store.write()?.create_concert(concert, note)
    }

    fn add_schedule(&self, schedule: &NewSchedule, note: Option<&OperatorNote>) -> Result<AddSchedule, StoreError> {
        self.store.write()?.add_schedule(schedule, note)
    }

    fn concert_of(&self, schedule: ScheduleId) -> Result<Option<ConcertId>, StoreError> {
        Ok(self.store.open()?.concert_of(schedule))
    }

    fn sales(&self, concert: ConcertId, now: OffsetDateTime) -> Result<Option<Vec<ScheduleSales>>, StoreError> {
        Ok(self.store.open()?.sales(concert, now))
    }
}

impl ReservationStore for MemoryPorts {
    fn hold(&self, req: &HoldRequest) -> Result<HoldOutcome, StoreError> {
        self.store.write()?.hold(req)
    }

    fn find(&self, id: ReservationId) -> Result<Option<Reservation>, StoreError> {
        Ok(self.store.open()?.find_reservation(id))
    }

    fn release_lapsed(&self, now: OffsetDateTime, limit: u32) -> Result<u64, StoreError> {
        Ok(self.store.write()?.release_lapsed(now, limit))
    }
}

impl AccountStore for MemoryPorts {
    fn balance(&self, user: UserId) -> Result<Won, StoreError> {
        Ok(self.store.open()?.balance(user))
    }

    fn credit(
        &self,
        req: &CreditRequest,
        guard: Option<&IdempotencyGuard<'_>>,
    ) -> Result<Claimed<CreditOutcome>, StoreError> {
        self.store.write()?.credit(req, guard)
    }

    fn ledger(&self, user: UserId, query: &LedgerQuery) -> Result<Option<Vec<LedgerEntry>>, StoreError> {
        Ok(self.store.open()?.ledger(user, query))
    }
}

impl PaymentStore for MemoryPorts {
    fn pay(
        &self,
        req: &PaymentRequest,
        guard: Option<&IdempotencyGuard<'_>>,
        decide: &mut Decide<'_>,
    ) -> Result<Claimed<Settlement>, PayError> {
        // The lock is held until the settlement is applied, so the payment is serialised
        // against every other port call: reservation, balance and token cannot move under it.
        self.store.write()?.pay(req, guard, decide)
    }
}

impl AuditStore for MemoryPorts {
    fn audit_log(&self, before: Option<i64>, limit: u32) -> Result<Vec<AuditEntry>, StoreError> {
        Ok(self.store.open()?.audit_log(before, limit))
    }
}

impl IdempotencyStore for MemoryPorts {
    fn find(
        &self,
        user: UserId,
        key: &IdempotencyKey,
        now: OffsetDateTime,
    ) -> Result<Option<IdempotencyRecord>, StoreError> {
        Ok(self.store.open()?.find_record(user, key, now))
    }

    fn purge_expired(&self, now: OffsetDateTime, limit: u32) -> Result<u64, StoreError> {
        Ok(self.store.write()?.purge_expired(now, limit))
    }
}
