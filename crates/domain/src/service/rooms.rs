//! The rooms' use cases: joining a room, reading a room's token, the gate a token's room puts
//! on concerts, a room's scheduler check (draw, admission, expiry, presence) and the
//! operator's rooms. `main` keeps its own paths in the parent module, untouched by rooms: with
//! no other room every answer is what it was before rooms existed.

use std::sync::Arc;

use time::OffsetDateTime;

use super::{IssuedToken, Ticketing};
use crate::error::{
    CreateRoomError, GetRoomError, IssueTokenError, ReadTokenError, StoreError, UpdateQueueError, UpdateRoomError,
};
use crate::ids::{ConcertId, ReservationId, ScheduleId, UserId};
use crate::queue::{AdmissionOutcome, QueueStats, SettingsChange, SettingsPatch, TokenStatus, TokenValue, TokenView};
use crate::room::{
    room_of, CreateRoomOutcome, DrawOutcome, Room, RoomChange, RoomChangeError, RoomDraft, RoomId, RoomState,
    UpdateRoomOutcome,
};
use crate::service::ActiveUser;

/// What decides a request's room: a concert, or the concert of a schedule or of the user's
/// reservation.
#[derive(Debug, Clone, Copy)]
pub(super) enum Gate {
    Concert(ConcertId),
    Schedule(ScheduleId),
    Reservation(ReservationId),
}

/// A room and its line as they stand now.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RoomView {
    /// The room and its settings.
    pub room: Room,
    /// Its state now (store clock).
    pub state: RoomState,
    /// Its line's counts and cursor (the draw, once made, is `stats.cursor.draw`).
    pub stats: QueueStats,
    /// When the next admission may run; `None` while paused.
    pub next_admission_at: Option<OffsetDateTime>,
    /// The wait of someone joining now; `None` while the order is still to be drawn.
    pub estimated_wait_secs: Option<i64>,
}

impl RoomView {
    fn of(room: Room, stats: QueueStats) -> Self {
        let now = stats.now;
        let policy = room.policy();
        let pending = room.order_pending_at(&stats.cursor, now);
        let next_admission_at = (!room.settings.paused).then(|| {
            let next = policy.next_admission_at(stats.cursor.last_admission_at, now);
            room.opens_at.map_or(next, |opens| next.max(opens))
        });
        let joining = i64::try_from(stats.waiting).unwrap_or(i64::MAX).saturating_add(1);
        let estimated_wait_secs = pending.is_none().then(|| policy.estimated_wait_secs(joining, &stats.cursor, now));
        Self { state: room.state_at(now), room, stats, next_admission_at, estimated_wait_secs }
    }
}

/// What one scheduler check did in one room other than `main`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RoomTick {
    /// The room.
    pub room: RoomId,
    /// The draw, when this check made it.
    pub drew: Option<crate::queue::DrawRecord>,
    /// The admission outcome (`NotDue` before the opening and before the draw).
    pub admission: AdmissionOutcome,
    /// ACTIVE tokens expired.
    pub tokens_expired: u64,
}

/// How many rooms one scheduler check works on at once (each on a thread of its own, each
/// room's calls one after another): enough to overlap the store round trips of a hundred
/// rooms, few enough to leave the store's pool (16 by default) to the requests.
pub const ROOM_CHECKS_AT_ONCE: usize = 4;

impl Ticketing {
    /// The rooms other than `main`, from memory when an adapter keeps them there.
    pub(super) fn rooms_now(&self) -> Result<Arc<[Room]>, StoreError> {
        match self.ports.rooms.rooms_in_memory() {
            Some(rooms) => Ok(rooms),
            None => Ok(self.ports.rooms.rooms()?.into()),
        }
    }

    /// The room to join instead, when `gate` names a concert of a room other than the token's;
    /// `None` when the token's room gates it, or when nothing is known of it (the use case then
    /// answers its own NOT_FOUND).
    pub(super) fn gate(&self, who: &ActiveUser, gate: Gate) -> Result<Option<RoomId>, StoreError> {
        let rooms = self.rooms_now()?;
        if rooms.is_empty() && who.room.is_main() {
            return Ok(None);
        }
        let concert = match gate {
            Gate::Concert(c) => Some(c),
            Gate::Schedule(s) => self.ports.catalogue.concert_of(s)?,
            Gate::Reservation(r) => match self.ports.reservations.find(r)? {
                Some(res) if res.user_id == who.user_id => self.ports.catalogue.concert_of(res.schedule_id)?,
                _ => None,
            },
        };
        Ok(concert.map(|c| room_of(c, &rooms)).filter(|room| *room != who.room))
    }

    /// A room by id, `main` included (its settings are the settings store's).
    ///
    /// # Errors
    /// [`StoreError`] when a store fails.
    pub fn room(&self, id: &RoomId) -> Result<Option<Room>, StoreError> {
        if id.is_main() {
            return Ok(Some(Room::main(self.ports.settings.load()?)));
        }
        if let Some(room) = self.rooms_now()?.iter().find(|r| r.id == *id) {
            return Ok(Some(room.clone()));
        }
        // Not in memory: perhaps created a moment ago on another instance.
        Ok(self.ports.rooms.rooms()?.into_iter().find(|r| r.id == *id))
    }

    /// Step 1 in a room: a place in the room's line, or the user's live token of that room. A
    /// user may wait in several rooms at once.
    ///
    /// # Errors
    /// `RoomNotFound`; `RoomNotOpen` before joining opens; `RoomClosed`; `Store`.
    pub fn issue_token_in(&self, user: UserId, room: &RoomId) -> Result<IssuedToken, IssueTokenError> {
        if room.is_main() {
            return self.issue_token(user);
        }
        let room = self.room(room)?.ok_or(IssueTokenError::RoomNotFound)?;
        let step = self.plan_issue(user, super::front::Place::Room(room))?;
        let outcome = self.line(step.room()).issue(step.user, step.value.clone(), step.now)?;
        Ok(self.finish_issue(&step, outcome))
    }

    /// Step 2 for a token of a room other than `main`.
    pub(super) fn read_room_token(&self, value: &TokenValue) -> Result<TokenView, ReadTokenError> {
        let room = self.room(&value.room())?.ok_or(ReadTokenError::Invalid)?;
        let found = self.line(&room.id).find_with_cursor(value)?;
        self.finish_read(&super::front::Place::Room(room), found)
    }

    /// Step 2 for a token of a room other than `main`, from memory only.
    pub(super) fn read_room_token_in_memory(&self, value: &TokenValue) -> Option<Result<TokenView, ReadTokenError>> {
        let rooms = self.ports.rooms.rooms_in_memory()?;
        let name = value.room_name();
        let room = rooms.iter().find(|r| r.id.as_str() == name)?;
        let (token, cursor) = self.line(&room.id).find_in_memory(value)?;
        let now = self.now();
        self.seen(room, &token, now);
        Some(Ok(TokenView::in_room(token, &cursor, room, now)))
    }

    /// Notes a sight of a WAITING token of a room that drops absent places.
    pub(super) fn seen(&self, room: &Room, token: &crate::queue::QueueToken, now: OffsetDateTime) {
        if room.abandon_after.is_some() && token.status == TokenStatus::Waiting {
            self.sightings.note(&room.id, &token.value, now);
        }
    }

    /// Hands the sights noted since the last call to each room's line, one write per room (and
    /// bucket), each as seen at the start of its presence bucket (`presence::BUCKET`; a token
    /// already handed over in the current bucket is not sent again). A batch the store refuses
    /// is kept for the next call.
    ///
    /// # Errors
    /// The first [`StoreError`] met (every room is tried).
    pub fn flush_presence(&self) -> Result<(), StoreError> {
        let mut first = Ok(());
        for (room, at, values) in self.sightings.drain() {
            if let Err(e) = self.line(&room).note_seen(&values, at) {
                self.sightings.restore((room, at, values));
                if first.is_ok() {
                    first = Err(e);
                }
            }
        }
        first
    }

    /// One scheduler check of every room other than `main`: presence handed to the lines, then
    /// per room its draw when due, its admission and its token expiry. Rooms are read afresh,
    /// so an operator's change applies from the next check; one room failing stops no other.
    /// Up to `Policy::room_checks_at_once` rooms are checked at once (their lines are independent),
    /// so a hundred rooms' round trips fit in one check interval on a busy store, and one
    /// room's draw does not hold up the others' admissions. The entries are in room order.
    ///
    /// # Errors
    /// [`StoreError`] when the rooms cannot be read; a room's own failure is its entry's.
    pub fn tick_rooms(&self) -> Result<Vec<Result<RoomTick, StoreError>>, StoreError> {
        if let Err(e) = self.flush_presence() {
            tracing::warn!(error = %e, "presence could not be recorded; kept for the next check");
        }
        let rooms = self.ports.rooms.rooms()?;
        let workers = self.policy.room_checks_at_once.min(rooms.len());
        if workers <= 1 {
            return Ok(rooms.iter().map(|room| self.tick_room(room)).collect());
        }
        // Each worker takes the next room not yet taken, so a slow room (a draw of a million)
        // holds up one worker, not the rooms behind it.
        let next = std::sync::atomic::AtomicUsize::new(0);
        let mut ticks: Vec<(usize, Result<RoomTick, StoreError>)> = std::thread::scope(|scope| {
            let handles: Vec<_> = (0..workers)
                .map(|_| {
                    scope.spawn(|| {
                        let mut done = Vec::new();
                        loop {
                            let i = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                            let Some(room) = rooms.get(i) else { break done };
                            done.push((i, self.tick_room(room)));
                        }
                    })
                })
                .collect();
            handles
                .into_iter()
                .flat_map(|h| h.join().unwrap_or_else(|panic| std::panic::resume_unwind(panic)))
                .collect()
        });
        ticks.sort_by_key(|(i, _)| *i);
        Ok(ticks.into_iter().map(|(_, tick)| tick).collect())
    }

    fn tick_room(&self, room: &Room) -> Result<RoomTick, StoreError> {
        let line = self.line(&room.id);
        let now = self.now();
        let mut drew = None;
        let admission = match room.opens_at {
            Some(opens) if now < opens => AdmissionOutcome::NotDue { wait: opens - now },
            Some(opens) if room.draw_at_open && line.cursor()?.draw.is_none() => {
                match line.draw(opens, self.seed())? {
                    DrawOutcome::NotDue => AdmissionOutcome::NotDue { wait: time::Duration::ZERO },
                    DrawOutcome::Drawn { record, fresh } => {
                        if fresh {
                            tracing::info!(room = %room.id, entrants = record.entrants, seed = record.seed, "drew the pre-queue's order");
                            drew = Some(record);
                        }
                        self.admit_room(room, line.as_ref())?
                    }
                }
            }
            _ => self.admit_room(room, line.as_ref())?,
        };
        let tokens_expired = self.sweep(|limit| line.expire_tokens(limit))?;
        Ok(RoomTick { room: room.id.clone(), drew, admission, tokens_expired })
    }

    fn admit_room(&self, room: &Room, line: &dyn crate::ports::QueueStore) -> Result<AdmissionOutcome, StoreError> {
        if room.settings.paused {
            return Ok(AdmissionOutcome::Paused);
        }
        line.admit(&room.policy())
    }

    /// A fresh seed for a draw: 53 random bits, so that it is exact as a JSON number in every
    /// client (JavaScript's numbers are doubles).
    fn seed(&self) -> u64 {
        let bytes = self.ports.random.uuid().into_bytes();
        let mut seed = [0; 8];
        seed.copy_from_slice(&bytes[..8]);
        u64::from_le_bytes(seed) >> 11
    }

    /// Every room with its line: `main` first, then by opening (rooms without one last), then
    /// by id.
    ///
    /// # Errors
    /// [`StoreError`] when a store fails.
    pub fn rooms_overview(&self) -> Result<Vec<RoomView>, StoreError> {
        let mut rooms = self.ports.rooms.rooms()?;
        rooms.sort_by(|a, b| (a.opens_at.is_none(), a.opens_at, &a.id).cmp(&(b.opens_at.is_none(), b.opens_at, &b.id)));
        let mut views = vec![RoomView::of(Room::main(self.ports.settings.load()?), self.ports.queue.stats()?)];
        for room in rooms {
            let stats = self.line(&room.id).stats()?;
            views.push(RoomView::of(room, stats));
        }
        Ok(views)
    }

    /// One room with its line.
    ///
    /// # Errors
    /// `NotFound`, `Store`.
    pub fn room_view(&self, id: &RoomId) -> Result<RoomView, GetRoomError> {
        let room = self.room(id)?.ok_or(GetRoomError::NotFound)?;
        let stats = self.line(&room.id).stats()?;
        Ok(RoomView::of(room, stats))
    }

    /// Creates a room, logged once with who made it.
    ///
    /// # Errors
    /// `Invalid`, `Exists`, `ConcertInRoom`, `UnknownConcert`, `Store`; nothing is stored on
    /// any of them.
    pub fn create_room(&self, actor: &str, draft: &RoomDraft) -> Result<RoomView, CreateRoomError> {
        let room = draft.validate(self.now(), self.policy.room_defaults)?;
        match self.ports.rooms.create_room(&room, Some(&self.note(actor)))? {
            CreateRoomOutcome::Created => {}
            CreateRoomOutcome::Exists => return Err(CreateRoomError::Exists),
            CreateRoomOutcome::ConcertTaken(c) => return Err(CreateRoomError::ConcertInRoom(c)),
            CreateRoomOutcome::UnknownConcert(c) => return Err(CreateRoomError::UnknownConcert(c)),
        }
        tracing::info!(actor, action = "room.create", room = %room.id, "operator created a room");
        let stats = self.line(&room.id).stats()?;
        Ok(RoomView::of(room, stats))
    }

    /// Changes a room for every instance (from each one's next scheduler check), logged once.
    /// `main` takes only its pause and admission settings (the same change as `update_queue`).
    ///
    /// # Errors
    /// `NotFound`, `Invalid`, `AlreadyOpen`, `ConcertInRoom`, `UnknownConcert`, `Store`;
    /// nothing changes on any of them.
    pub fn update_room(&self, actor: &str, id: &RoomId, change: &RoomChange) -> Result<RoomView, UpdateRoomError> {
        if id.is_main() {
            return self.update_main(actor, change);
        }
        let now = self.now();
        let outcome = self.ports.rooms.update_room(id, &mut |room| change.apply(room, now), Some(&self.note(actor)))?;
        let room = match outcome {
            UpdateRoomOutcome::Updated { after, .. } => *after,
            UpdateRoomOutcome::NotFound => return Err(UpdateRoomError::NotFound),
            UpdateRoomOutcome::Refused(RoomChangeError::AlreadyOpen) => return Err(UpdateRoomError::AlreadyOpen),
            UpdateRoomOutcome::Refused(RoomChangeError::Invalid(e)) => return Err(UpdateRoomError::Invalid(e)),
            UpdateRoomOutcome::ConcertTaken(c) => return Err(UpdateRoomError::ConcertInRoom(c)),
            UpdateRoomOutcome::UnknownConcert(c) => return Err(UpdateRoomError::UnknownConcert(c)),
        };
        tracing::info!(actor, action = "room.update", room = %room.id, "operator changed a room");
        let stats = self.line(&room.id).stats()?;
        Ok(RoomView::of(room, stats))
    }

    fn update_main(&self, actor: &str, change: &RoomChange) -> Result<RoomView, UpdateRoomError> {
        let only_settings = RoomChange { settings: SettingsChange::default(), ..change.clone() };
        if !only_settings.is_empty() {
            return Err(crate::room::InvalidRoom(
                "the room main takes only paused, admitBatch, admitIntervalSecs, activeTtlSecs and maxActive".into(),
            )
            .into());
        }
        let patch = SettingsPatch::new(change.settings).map_err(|e| crate::room::InvalidRoom(e.0))?;
        let state = self.update_queue(actor, &patch).map_err(|e| match e {
            UpdateQueueError::Invalid(e) => UpdateRoomError::Invalid(crate::room::InvalidRoom(e.0)),
            UpdateQueueError::Store(e) => UpdateRoomError::Store(e),
        })?;
        Ok(RoomView::of(Room::main(state.settings), state.stats))
    }
}
