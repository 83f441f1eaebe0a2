//! Decorators for rooms: [`CachedRooms`] serves the rooms from memory, [`CachedLines`] puts a
//! [`CachedQueue`] (the poll cache) in front of each room's line.
//!
//! The rooms are read on every request that touches a room (joining, polling, the gate on a
//! concert) and change a few times per on-sale; the contract applies an operator's change on
//! every instance "from its next scheduler check". So, as for the settings: a copy at most
//! `ttl` old (`SCHEDULER_CHECK_MILLIS`) is answered from memory, [`RoomStore::rooms`] (which the
//! scheduler calls at every check) reads the store and renews the copy, and a change made
//! through this instance drops it, so this instance sees its own change at once.

use std::collections::HashMap;
use std::sync::{Arc, PoisonError, RwLock, RwLockWriteGuard};
use std::time::Duration;

use domain::audit::OperatorNote;
use domain::ports::{ChangeRoom, QueueLines, QueueStore, RoomStore, StoreError};
use domain::room::{CreateRoomOutcome, Room, RoomId, UpdateRoomOutcome};

use crate::poll_cache::{CachedQueue, PollCacheBudget, PollCacheSettings};
use crate::stamped::Stamped;
use crate::ticker::Ticker;

/// A [`RoomStore`] with an in-memory copy of the rooms at most `ttl` old.
pub struct CachedRooms {
    inner: Arc<dyn RoomStore>,
    ticker: Arc<dyn Ticker>,
    ttl: Duration,
    copy: RwLock<Stamped<Arc<[Room]>>>,
}

impl std::fmt::Debug for CachedRooms {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CachedRooms").field("ttl", &self.ttl).finish_non_exhaustive()
    }
}

impl CachedRooms {
    /// Wraps `inner`, keeping a copy for `ttl`.
    #[must_use]
    pub fn new(inner: Arc<dyn RoomStore>, ticker: Arc<dyn Ticker>, ttl: Duration) -> Self {
        Self { inner, ticker, ttl, copy: RwLock::default() }
    }

    fn copy(&self) -> RwLockWriteGuard<'_, Stamped<Arc<[Room]>>> {
        self.copy.write().unwrap_or_else(PoisonError::into_inner)
    }
}

impl RoomStore for CachedRooms {
    fn rooms(&self) -> Result<Vec<Room>, StoreError> {
        let now = self.ticker.now();
        let start = self.copy.read().unwrap_or_else(PoisonError::into_inner).start(now);
        let rooms = self.inner.rooms()?;
        // A slower read must not replace a newer copy.
        self.copy().keep(start, rooms.clone().into(), |_, held_at| held_at > now);
        Ok(rooms)
    }

    fn rooms_in_memory(&self) -> Option<Arc<[Room]>> {
        self.copy.read().unwrap_or_else(PoisonError::into_inner).fresh(self.ticker.now(), self.ttl)
    }

    fn create_room(&self, room: &Room, note: Option<&OperatorNote>) -> Result<CreateRoomOutcome, StoreError> {
        let outcome = self.inner.create_room(room, note)?;
        self.copy().invalidate();
        Ok(outcome)
    }

    fn update_room(
        &self,
        id: &RoomId,
        change: &mut ChangeRoom<'_>,
        note: Option<&OperatorNote>,
    ) -> Result<UpdateRoomOutcome, StoreError> {
        let outcome = self.inner.update_room(id, change, note)?;
        self.copy().invalidate();
        Ok(outcome)
    }
}

/// [`QueueLines`] with the poll cache in front of each room's line: one [`CachedQueue`] per
/// room, made on the room's first use and kept (a room is never deleted; a closed room's line
/// still answers its tokens).
pub struct CachedLines {
    inner: Arc<dyn QueueLines>,
    ticker: Arc<dyn Ticker>,
    settings: PollCacheSettings,
    budget: PollCacheBudget,
    lines: RwLock<HashMap<RoomId, Arc<CachedQueue>>>,
}

impl std::fmt::Debug for CachedLines {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CachedLines").finish_non_exhaustive()
    }
}

impl CachedLines {
    /// Wraps `inner`; each room's cache has `settings`, and all of them hold at most
    /// `settings.capacity` tokens together with every other cache sharing `budget` (`main`'s).
    #[must_use]
    pub fn new(
        inner: Arc<dyn QueueLines>,
        ticker: Arc<dyn Ticker>,
        settings: PollCacheSettings,
        budget: PollCacheBudget,
    ) -> Self {
        Self { inner, ticker, settings, budget, lines: RwLock::default() }
    }
}

impl CachedLines {
    /// The poll cache in front of `room`'s line, made on the room's first use.
    #[must_use]
    pub fn cache(&self, room: &RoomId) -> Arc<CachedQueue> {
        // Every poll of a room's token passes here: a shared lock, a write lock only for a
        // room's first use.
        if let Some(line) = self.lines.read().unwrap_or_else(PoisonError::into_inner).get(room) {
            return line.clone();
        }
        let mut lines = self.lines.write().unwrap_or_else(PoisonError::into_inner);
        lines
            .entry(room.clone())
            .or_insert_with(|| {
                Arc::new(CachedQueue::sharing(
                    self.inner.line(room),
                    self.ticker.clone(),
                    self.settings,
                    self.budget.clone(),
                ))
            })
            .clone()
    }
}

impl QueueLines for CachedLines {
    fn line(&self, room: &RoomId) -> Arc<dyn QueueStore> {
        self.cache(room)
    }
}
