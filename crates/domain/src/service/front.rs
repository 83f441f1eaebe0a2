//! The front door without blocking: joining a line (step 1) and polling a token (step 2) as
//! futures over [`AsyncQueueLines`], for a queue store with a non-blocking client (Redis), so
//! the HTTP worker makes the store call itself instead of hopping to a blocking thread and back.
//!
//! The rules are not restated: each use case is split into pure steps that the blocking path
//! (`issue_token`, `issue_token_in`, `read_token`) and the non-blocking one both call, in the
//! same order:
//!
//! 1. decide ([`Ticketing::plan_issue`]): the room's state at `now` (joining refused before the
//!    room opens and after it closes), `now`, the new token's value;
//! 2. the store call ([`crate::ports::QueueStore::issue`] or [`AsyncQueueLines::issue`], and the
//!    `find_with_cursor`s);
//! 3. the answer ([`Ticketing::finish_issue`], [`Ticketing::finish_read`]): the presence sight of
//!    a room that drops absent places, and the view.
//!
//! The non-blocking use cases need their inputs from memory ([`SettingsStore::load_in_memory`],
//! [`RoomStore::rooms_in_memory`]): when one is not there (a cache not filled yet, a room
//! created a moment ago on another instance, a store without a cache) they answer `None`, and
//! the caller takes the blocking path, which reads them from the store. They answer `None` too
//! when no [`AsyncQueueLines`] was given ([`Ticketing::with_async_queue`]).
//!
//! [`SettingsStore::load_in_memory`]: crate::ports::SettingsStore::load_in_memory
//! [`RoomStore::rooms_in_memory`]: crate::ports::RoomStore::rooms_in_memory

use time::OffsetDateTime;

use super::{IssuedToken, Ticketing};
use crate::call::CommitWatch;
use crate::error::{IssueTokenError, ReadTokenError, StoreError};
use crate::ids::UserId;
use crate::ports::{AsyncQueueLines, IssueOutcome};
use crate::queue::{QueueCursor, QueueSettings, QueueToken, TokenValue, TokenView};
use crate::room::{Room, RoomId, RoomState};

/// Where a token lives, with what its view needs: `main` and its live settings, or a room.
#[derive(Debug, Clone)]
pub(super) enum Place {
    Main(QueueSettings),
    Room(Room),
}

impl Place {
    fn id(&self) -> RoomId {
        match self {
            Self::Main(_) => RoomId::main(),
            Self::Room(room) => room.id.clone(),
        }
    }
}

/// Step 1, decided: who joins which line, when, with which new value.
#[derive(Debug, Clone)]
pub struct IssueStep {
    pub(super) user: UserId,
    pub(super) place: Place,
    pub(super) room: RoomId,
    pub(super) value: TokenValue,
    pub(super) now: OffsetDateTime,
}

impl IssueStep {
    /// The line joined.
    #[must_use]
    pub fn room(&self) -> &RoomId {
        &self.room
    }
}

/// Step 2 without blocking, decided: which token of which line is read.
#[derive(Debug, Clone)]
pub struct ReadStep {
    place: Place,
    room: RoomId,
    value: TokenValue,
}

impl Ticketing {
    /// Step 1's decision (pure, given the place): refuses to join a room that has not opened
    /// its joining or has closed; picks `now` and the new token's value.
    pub(super) fn plan_issue(&self, user: UserId, place: Place) -> Result<IssueStep, IssueTokenError> {
        let now = self.now();
        if let Place::Room(room) = &place {
            match room.state_at(now) {
                RoomState::Scheduled => {
                    return Err(IssueTokenError::RoomNotOpen {
                        opens_at: room.opens_at,
                        prequeue_opens_at: room.prequeue_opens_at,
                    })
                }
                RoomState::Closed => return Err(IssueTokenError::RoomClosed),
                RoomState::Prequeue | RoomState::Open | RoomState::Paused => {}
            }
        }
        let room = place.id();
        let value = if room.is_main() { self.ports.random.token() } else { self.ports.random.token().in_room(&room) };
        Ok(IssueStep { user, place, room, value, now })
    }

    /// Step 1's answer from the store's outcome: a returning user's token of a room counts as
    /// a sight of them.
    pub(super) fn finish_issue(&self, step: &IssueStep, outcome: IssueOutcome) -> IssuedToken {
        let view = match &step.place {
            Place::Main(settings) => TokenView::of(outcome.token, &outcome.cursor, settings, step.now),
            Place::Room(room) => {
                if !outcome.created {
                    self.seen(room, &outcome.token, step.now);
                }
                TokenView::in_room(outcome.token, &outcome.cursor, room, step.now)
            }
        };
        IssuedToken { view, created: outcome.created }
    }

    /// Step 2's answer from the store's: an unknown token is `Invalid`; a token of a room
    /// counts as a sight of its user.
    pub(super) fn finish_read(
        &self,
        place: &Place,
        found: Option<(QueueToken, QueueCursor)>,
    ) -> Result<TokenView, ReadTokenError> {
        let (token, cursor) = found.ok_or(ReadTokenError::Invalid)?;
        let now = self.now();
        Ok(match place {
            Place::Main(settings) => TokenView::of(token, &cursor, settings, now),
            Place::Room(room) => {
                self.seen(room, &token, now);
                TokenView::in_room(token, &cursor, room, now)
            }
        })
    }

    /// The place of `room` from memory; `None` when it is not there.
    fn place_in_memory(&self, room: &RoomId) -> Option<Place> {
        if room.is_main() {
            return self.ports.settings.load_in_memory().map(Place::Main);
        }
        let rooms = self.ports.rooms.rooms_in_memory()?;
        rooms.iter().find(|r| r.id == *room).cloned().map(Place::Room)
    }

    /// Step 1 without blocking: `None` when the caller must call
    /// [`Ticketing::issue_token_in`] on a thread that may block instead (no async queue, or the
    /// settings or the room not in memory: an unknown room is looked up in the store there);
    /// otherwise the decision, or why joining is refused (`RoomNotOpen`, `RoomClosed`).
    #[must_use]
    pub fn plan_issue_in_memory(&self, user: UserId, room: &RoomId) -> Option<Result<IssueStep, IssueTokenError>> {
        self.nonblocking.as_ref()?;
        Some(self.plan_issue(user, self.place_in_memory(room)?))
    }

    /// Step 1's store call and answer without blocking, for a decision of
    /// [`Ticketing::plan_issue_in_memory`]. The caller keeps a clone of `watch` and gives up
    /// on the call by abandoning it (then, and only then, it may drop the future and answer
    /// that nothing was done).
    ///
    /// # Errors
    /// `Store` when the store fails ([`StoreError::Timeout`] when `watch` was abandoned before
    /// the write was sent: nothing was stored).
    pub async fn issue_planned(&self, step: IssueStep, watch: CommitWatch) -> Result<IssuedToken, IssueTokenError> {
        let lines = self.async_lines()?;
        let outcome = lines.issue(&step.room, step.user, step.value.clone(), step.now, &watch).await?;
        Ok(self.finish_issue(&step, outcome))
    }

    /// Step 2 without blocking, for a bearer [`Ticketing::read_token_in_memory`] could not
    /// answer: `None` when the caller must call [`Ticketing::read_token`] on a thread that may
    /// block instead (no async queue, or the settings or the token's room not in memory);
    /// otherwise what to read, or `Invalid` for a malformed bearer.
    #[must_use]
    pub fn plan_read_in_memory(&self, bearer: &str) -> Option<Result<ReadStep, ReadTokenError>> {
        self.nonblocking.as_ref()?;
        let Ok(value) = TokenValue::parse(bearer) else {
            return Some(Err(ReadTokenError::Invalid));
        };
        let room = value.room();
        let place = self.place_in_memory(&room)?;
        Some(Ok(ReadStep { place, room, value }))
    }

    /// Step 2's store call and answer without blocking, for a decision of
    /// [`Ticketing::plan_read_in_memory`]. It changes nothing in the store (a sight is noted in
    /// memory, handed over later by [`Ticketing::flush_presence`]), so it may be dropped at any
    /// point.
    ///
    /// # Errors
    /// `Invalid` for an unknown token; `Store` when the store fails.
    pub async fn read_planned(&self, step: ReadStep) -> Result<TokenView, ReadTokenError> {
        let lines = self.async_lines()?;
        let found = lines.find_with_cursor(&step.room, &step.value).await?;
        self.finish_read(&step.place, found)
    }

    fn async_lines(&self) -> Result<&dyn AsyncQueueLines, StoreError> {
        self.nonblocking
            .as_deref()
            .ok_or_else(|| StoreError::Internal("no non-blocking queue client was configured".into()))
    }
}
