//! Rooms: one waiting line per on-sale.
//!
//! A room is a waiting line with its own settings ([`QueueSettings`]: pause, N, M, TTL, cap),
//! its own order and its own admissions, gating the concerts assigned to it. The room `main`
//! always exists, cannot be closed, and gates every concert that is not assigned to another
//! room; with no other room the service is the single line it always was. An ACTIVE token opens
//! its own room's concerts only ([`Room::gates`]).
//!
//! A room's state ([`RoomState`]) is decided from the store's clock: SCHEDULED before joining
//! opens, PREQUEUE between `prequeue_opens_at` and `opens_at`, OPEN (or PAUSED) after, CLOSED
//! once an operator closes it.

use std::fmt;

use thiserror::Error;
use time::{Duration, OffsetDateTime};

use crate::catalogue;
use crate::ids::ConcertId;
use crate::queue::{QueueSettings, SettingsChange, SettingsPatch};

/// A room's id: a slug, `^[a-z0-9][a-z0-9-]{0,62}$`, chosen by the operator.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct RoomId(String);

/// A string that is not a room id.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[error("a room id is 1 to 63 lower-case letters, digits and dashes, starting with a letter or digit")]
pub struct MalformedRoomId;

impl RoomId {
    /// The id of the room that always exists.
    pub const MAIN: &'static str = "main";

    /// The room `main`.
    #[must_use]
    pub fn main() -> Self {
        Self(Self::MAIN.to_owned())
    }

    /// Parses a slug.
    ///
    /// # Errors
    /// [`MalformedRoomId`] unless `s` matches `^[a-z0-9][a-z0-9-]{0,62}$`.
    pub fn parse(s: &str) -> Result<Self, MalformedRoomId> {
        let b = s.as_bytes();
        let ok = (1..=63).contains(&b.len())
            && b.first().is_some_and(|c| c.is_ascii_lowercase() || c.is_ascii_digit())
            && b.iter().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || *c == b'-');
        if ok {
            Ok(Self(s.to_owned()))
        } else {
            Err(MalformedRoomId)
        }
    }

    /// The slug.
    #[must_use]
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// Whether this is `main`.
    #[must_use]
    pub fn is_main(&self) -> bool {
        self.0 == Self::MAIN
    }
}

impl fmt::Debug for RoomId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "RoomId({})", self.0)
    }
}

impl fmt::Display for RoomId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

spelled_enum! {
    /// Where a room is in its on-sale, as of the store's clock.
    pub enum RoomState {
        /// Before joining opens: joining is refused.
        Scheduled,
        /// Joining is accepted; nobody has a position until the opening.
        Prequeue,
        /// Admitting.
        Open,
        /// Open, but an operator paused admission.
        Paused,
        /// Closed by an operator: joining is refused; tokens issued live on as usual.
        Closed,
    }
}

/// A room and its settings, as stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Room {
    /// Its id.
    pub id: RoomId,
    /// What buyers see, 1 to 200 characters.
    pub name: String,
    /// The concerts it gates (for `main`: empty; it gates every concert of no other room).
    pub concerts: Vec<ConcertId>,
    /// When it opens (admission starts); `None`: open from creation.
    pub opens_at: Option<OffsetDateTime>,
    /// When joining opens, before `opens_at`; `None`: joining opens at `opens_at`.
    pub prequeue_opens_at: Option<OffsetDateTime>,
    /// Whether the pre-queue's order is drawn at the opening.
    pub draw_at_open: bool,
    /// How long a WAITING token keeps its place without a poll; `None`: for ever.
    pub abandon_after: Option<Duration>,
    /// Closed by an operator.
    pub closed: bool,
    /// Pause, N, M, TTL, cap.
    pub settings: QueueSettings,
}

impl Room {
    /// `main` with these settings: always open, gating every concert of no other room.
    #[must_use]
    pub fn main(settings: QueueSettings) -> Self {
        Self {
            id: RoomId::main(),
            name: "Main".to_owned(),
            concerts: Vec::new(),
            opens_at: None,
            prequeue_opens_at: None,
            draw_at_open: false,
            abandon_after: None,
            closed: false,
            settings,
        }
    }

    /// The state at `now` (the store's clock).
    #[must_use]
    pub fn state_at(&self, now: OffsetDateTime) -> RoomState {
        if self.closed {
            return RoomState::Closed;
        }
        let joining_opens = self.prequeue_opens_at.or(self.opens_at);
        if joining_opens.is_some_and(|t| now < t) {
            return RoomState::Scheduled;
        }
        if self.opens_at.is_some_and(|t| now < t) {
            return RoomState::Prequeue;
        }
        if self.settings.paused {
            RoomState::Paused
        } else {
            RoomState::Open
        }
    }

    /// Whether a buyer may join at `now`.
    #[must_use]
    pub fn accepts_joins_at(&self, now: OffsetDateTime) -> bool {
        !matches!(self.state_at(now), RoomState::Scheduled | RoomState::Closed)
    }

    /// Whether admission may run at `now` (open and not paused; a closed room still admits
    /// the tokens it issued).
    #[must_use]
    pub fn admits_at(&self, now: OffsetDateTime) -> bool {
        !self.settings.paused && self.opens_at.is_none_or(|t| now >= t)
    }
}

/// Which room gates a concert: the room that lists it, else `main`.
#[must_use]
pub fn room_of(concert: ConcertId, rooms: &[Room]) -> RoomId {
    rooms.iter().find(|r| !r.id.is_main() && r.concerts.contains(&concert)).map_or_else(RoomId::main, |r| r.id.clone())
}

/// Bounds of a room's fields (contract, "Operator API for rooms").
pub mod limits {
    /// `abandonAfterSecs` when not 0.
    pub const ABANDON_AFTER_SECS: std::ops::RangeInclusive<i64> = 30..=86_400;
}

/// A room as an operator asks for it, before validation.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RoomDraft {
    /// The slug.
    pub id: String,
    pub name: String,
    /// The concerts it gates.
    pub concerts: Vec<ConcertId>,
    /// When it opens.
    pub opens_at: Option<OffsetDateTime>,
    /// When joining opens (needs `opens_at`, before it).
    pub prequeue_opens_at: Option<OffsetDateTime>,
    /// Draw the pre-queue's order at the opening (default: true with a pre-queue).
    pub draw_at_open: Option<bool>,
    /// 0 (never) or within [`limits::ABANDON_AFTER_SECS`].
    pub abandon_after_secs: Option<i64>,
    /// The room's settings; absent ones default to the service's starting settings.
    pub settings: SettingsChange,
}

/// Why a room draft or change is refused; the text names the field.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[error("{0}")]
pub struct InvalidRoom(pub String);

impl RoomDraft {
    /// Validates the draft at `now` (the store's clock), filling absent settings from
    /// `defaults`.
    ///
    /// # Errors
    /// [`InvalidRoom`] naming the first bad field.
    pub fn validate(&self, now: OffsetDateTime, defaults: QueueSettings) -> Result<Room, InvalidRoom> {
        let id = RoomId::parse(&self.id).map_err(|e| InvalidRoom(format!("id: {e}")))?;
        if id.is_main() {
            return Err(InvalidRoom("the room main exists already".into()));
        }
        let name = validate_name(&self.name)?;
        if self.prequeue_opens_at.is_some() && self.opens_at.is_none() {
            return Err(InvalidRoom("prequeueOpensAt needs opensAt".into()));
        }
        if let Some(opens) = self.opens_at {
            if opens <= now {
                return Err(InvalidRoom("opensAt must be in the future".into()));
            }
            if self.prequeue_opens_at.is_some_and(|p| p >= opens) {
                return Err(InvalidRoom("prequeueOpensAt must be before opensAt".into()));
            }
        }
        let mut concerts = self.concerts.clone();
        concerts.sort();
        concerts.dedup();
        let settings = if self.settings == SettingsChange::default() {
            defaults
        } else {
            SettingsPatch::new(self.settings).map_err(|e| InvalidRoom(e.0))?.apply(defaults)
        };
        Ok(Room {
            id,
            name,
            concerts,
            opens_at: self.opens_at,
            prequeue_opens_at: self.prequeue_opens_at,
            draw_at_open: self.draw_at_open.unwrap_or(self.prequeue_opens_at.is_some()),
            abandon_after: abandon_after(self.abandon_after_secs.unwrap_or(0))?,
            closed: false,
            settings,
        })
    }
}

fn validate_name(name: &str) -> Result<String, InvalidRoom> {
    catalogue::check_name("name", name, true).map_err(|e| InvalidRoom(e.0))
}

fn abandon_after(secs: i64) -> Result<Option<Duration>, InvalidRoom> {
    if secs == 0 {
        return Ok(None);
    }
    if limits::ABANDON_AFTER_SECS.contains(&secs) {
        return Ok(Some(Duration::seconds(secs)));
    }
    let r = &limits::ABANDON_AFTER_SECS;
    Err(InvalidRoom(format!("abandonAfterSecs must be 0 or between {} and {}", r.start(), r.end())))
}

/// A change to a room an operator asks for: each field `None` leaves it as it is.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RoomChange {
    /// A new name.
    pub name: Option<String>,
    /// The concerts it gates from now on (added ones must come from `main`; removed ones go
    /// back to `main`).
    pub concerts: Option<Vec<ConcertId>>,
    /// A new opening (`Some(None)` removes it); only before the opening.
    pub opens_at: Option<Option<OffsetDateTime>>,
    /// A new pre-queue opening (`Some(None)` removes it); only before the opening.
    pub prequeue_opens_at: Option<Option<OffsetDateTime>>,
    /// Draw at the opening or not; only before the opening.
    pub draw_at_open: Option<bool>,
    /// 0 (never) or within [`limits::ABANDON_AFTER_SECS`].
    pub abandon_after_secs: Option<i64>,
    /// Close (`true`) or reopen (`false`) the room.
    pub closed: Option<bool>,
    /// Pause, N, M, TTL, cap.
    pub settings: SettingsChange,
}

/// Why a change cannot apply to the room as it is now.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum RoomChangeError {
    /// A field is out of bounds or inconsistent.
    #[error(transparent)]
    Invalid(#[from] InvalidRoom),
    /// The opening, the pre-queue or the draw changes after the room opened.
    #[error("the room has opened: its opening, pre-queue and draw can no longer change")]
    AlreadyOpen,
}

impl RoomChange {
    /// Whether the change names nothing.
    #[must_use]
    pub fn is_empty(&self) -> bool {
        *self == Self::default()
    }

    /// The room after this change at `now` (the store's clock).
    ///
    /// # Errors
    /// [`RoomChangeError`]: a bad field, an empty change, closing `main`, or a change of the
    /// opening after it passed.
    pub fn apply(&self, room: &Room, now: OffsetDateTime) -> Result<Room, RoomChangeError> {
        if self.is_empty() {
            return Err(InvalidRoom("name at least one field to change".into()).into());
        }
        let mut next = room.clone();
        if let Some(name) = &self.name {
            next.name = validate_name(name)?;
        }
        if let Some(concerts) = &self.concerts {
            let mut concerts = concerts.clone();
            concerts.sort();
            concerts.dedup();
            next.concerts = concerts;
        }
        let opening = self.opens_at.is_some() || self.prequeue_opens_at.is_some() || self.draw_at_open.is_some();
        if opening {
            if room.opens_at.is_none_or(|t| now >= t) {
                return Err(RoomChangeError::AlreadyOpen);
            }
            if let Some(opens) = self.opens_at {
                next.opens_at = opens;
            }
            if let Some(pre) = self.prequeue_opens_at {
                next.prequeue_opens_at = pre;
            }
            if let Some(draw) = self.draw_at_open {
                next.draw_at_open = draw;
            }
            if next.prequeue_opens_at.is_some() && next.opens_at.is_none() {
                return Err(InvalidRoom("prequeueOpensAt needs opensAt".into()).into());
            }
            if let Some(opens) = next.opens_at {
                if opens <= now {
                    return Err(InvalidRoom("opensAt must be in the future".into()).into());
                }
                if next.prequeue_opens_at.is_some_and(|p| p >= opens) {
                    return Err(InvalidRoom("prequeueOpensAt must be before opensAt".into()).into());
                }
            }
        }
        if let Some(secs) = self.abandon_after_secs {
            next.abandon_after = abandon_after(secs)?;
        }
        if let Some(closed) = self.closed {
            if room.id.is_main() && closed {
                return Err(InvalidRoom("the room main cannot be closed".into()).into());
            }
            next.closed = closed;
        }
        if self.settings != SettingsChange::default() {
            next.settings = SettingsPatch::new(self.settings).map_err(|e| InvalidRoom(e.0))?.apply(room.settings);
        }
        Ok(next)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t0() -> OffsetDateTime {
        OffsetDateTime::from_unix_timestamp(1_893_456_000).unwrap_or(OffsetDateTime::UNIX_EPOCH)
    }

    fn draft() -> RoomDraft {
        RoomDraft { id: "stadium-tour".into(), name: "Stadium tour".into(), ..RoomDraft::default() }
    }

    #[test]
    fn room_ids_are_slugs() {
        for ok in ["main", "a", "stadium-tour-2027", "0abc", &"x".repeat(63)] {
            assert!(RoomId::parse(ok).is_ok(), "{ok}");
        }
        for bad in ["", "-a", "A", "a_b", "a b", "é", &"x".repeat(64)] {
            assert!(RoomId::parse(bad).is_err(), "{bad}");
        }
        assert!(RoomId::main().is_main());
    }

    #[test]
    fn a_room_moves_from_scheduled_through_prequeue_to_open() {
        let room = RoomDraft {
            opens_at: Some(t0() + Duration::hours(2)),
            prequeue_opens_at: Some(t0() + Duration::hours(1)),
            ..draft()
        }
        .validate(t0(), QueueSettings::default())
        .unwrap_or_else(|e| panic!("{e}"));
        assert!(room.draw_at_open, "a pre-queue draws by default");
        let at = |h: i64| room.state_at(t0() + Duration::hours(h) - Duration::microseconds(1));
        assert_eq!(at(1), RoomState::Scheduled);
        assert_eq!(room.state_at(t0() + Duration::hours(1)), RoomState::Prequeue);
        assert_eq!(at(2), RoomState::Prequeue);
        assert_eq!(room.state_at(t0() + Duration::hours(2)), RoomState::Open);
        assert!(!room.admits_at(t0() + Duration::hours(2) - Duration::microseconds(1)));
        assert!(room.admits_at(t0() + Duration::hours(2)));
        let mut paused = room.clone();
        paused.settings.paused = true;
        assert_eq!(paused.state_at(t0() + Duration::hours(3)), RoomState::Paused);
        paused.closed = true;
        assert_eq!(paused.state_at(t0() + Duration::hours(3)), RoomState::Closed);
        assert!(!paused.accepts_joins_at(t0() + Duration::hours(3)));
    }

    #[test]
    fn drafts_are_checked_field_by_field() {
        let now = t0();
        let bad = |d: RoomDraft| d.validate(now, QueueSettings::default()).unwrap_err().0;
        assert!(bad(RoomDraft { id: "Main".into(), ..draft() }).starts_with("id"));
        assert!(bad(RoomDraft { id: "main".into(), ..draft() }).contains("exists"));
        assert!(bad(RoomDraft { name: String::new(), ..draft() }).contains("name"));
        assert!(bad(RoomDraft { prequeue_opens_at: Some(now), ..draft() }).contains("needs opensAt"));
        assert!(bad(RoomDraft { opens_at: Some(now), ..draft() }).contains("future"));
        let late = RoomDraft {
            opens_at: Some(now + Duration::hours(1)),
            prequeue_opens_at: Some(now + Duration::hours(1)),
            ..draft()
        };
        assert!(bad(late).contains("before opensAt"));
        assert!(bad(RoomDraft { abandon_after_secs: Some(29), ..draft() }).contains("abandonAfterSecs"));
        let batch = SettingsChange { admit_batch: Some(0), ..SettingsChange::default() };
        assert!(bad(RoomDraft { settings: batch, ..draft() }).contains("admitBatch"));
        // A pre-queue that opened already is fine: it is open at once.
        let room = RoomDraft {
            opens_at: Some(now + Duration::hours(1)),
            prequeue_opens_at: Some(now - Duration::hours(1)),
            abandon_after_secs: Some(60),
            settings: SettingsChange { admit_batch: Some(7), ..SettingsChange::default() },
            ..draft()
        }
        .validate(now, QueueSettings::default())
        .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(room.state_at(now), RoomState::Prequeue);
        assert_eq!((room.settings.admission.batch, room.abandon_after), (7, Some(Duration::seconds(60))));
    }

    #[test]
    fn the_opening_changes_only_before_it_and_main_never_closes() {
        let now = t0();
        let room = RoomDraft { opens_at: Some(now + Duration::hours(1)), ..draft() }
            .validate(now, QueueSettings::default())
            .unwrap_or_else(|e| panic!("{e}"));
        let later = RoomChange { opens_at: Some(Some(now + Duration::hours(2))), ..RoomChange::default() };
        assert_eq!(later.apply(&room, now).map(|r| r.opens_at), Ok(Some(now + Duration::hours(2))));
        assert_eq!(later.apply(&room, now + Duration::hours(1)), Err(RoomChangeError::AlreadyOpen));
        let close = RoomChange { closed: Some(true), ..RoomChange::default() };
        assert!(close.apply(&room, now).is_ok_and(|r| r.closed));
        assert!(close.apply(&Room::main(QueueSettings::default()), now).is_err());
        assert!(RoomChange::default().apply(&room, now).is_err(), "an empty change");
        let pause = RoomChange {
            settings: SettingsChange { paused: Some(true), ..SettingsChange::default() },
            ..RoomChange::default()
        };
        assert!(pause.apply(&room, now + Duration::hours(2)).is_ok_and(|r| r.settings.paused));
    }

    #[test]
    fn a_concert_belongs_to_the_room_that_lists_it_else_to_main() {
        let (a, b) = (ConcertId::from_uuid(uuid::Uuid::from_u128(1)), ConcertId::from_uuid(uuid::Uuid::from_u128(2)));
        let room = Room { concerts: vec![a], ..Room::main(QueueSettings::default()) };
        let room = Room { id: RoomId::parse("tour").unwrap_or_else(|_| RoomId::main()), ..room };
        let rooms = [Room::main(QueueSettings::default()), room];
        assert_eq!(room_of(a, &rooms).as_str(), "tour");
        assert_eq!(room_of(b, &rooms), RoomId::main());
    }
}
