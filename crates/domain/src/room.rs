//! Rooms: one waiting line per on-sale.
//!
//! A room is a waiting line with its own settings ([`QueueSettings`]: pause, N, M, TTL, cap),
//! its own order and its own admissions, gating the concerts assigned to it. The room `main`
//! always exists, cannot be closed, and gates every concert that is not assigned to another
//! room; with no other room the service is the single line it always was. An ACTIVE token opens
//! its own room's concerts only ([`Room::gates`]).
//!
//! **The draw.** A room with a pre-queue takes joiners before it opens, with no position. At
//! the first admission check at or after the opening the line's store renumbers every token
//! issued before the opening by [`drawn_positions`] from a fresh seed, once over all instances
//! (the store records the draw with the line, [`crate::queue::DrawRecord`]); tokens issued
//! after the opening keep their arrival order behind them.
//!
//! **Presence.** A WAITING token is present while it was issued, re-joined or polled within
//! `abandon_after` ([`AdmissionPolicy::is_present`]); instances note polls in memory and tell
//! the store in batches, and admission skips the absent.
//!
//! A room's state ([`RoomState`]) is decided from the store's clock: SCHEDULED before joining
//! opens, PREQUEUE between `prequeue_opens_at` and `opens_at`, OPEN (or PAUSED) after, CLOSED
//! once an operator closes it.

use std::fmt;

use thiserror::Error;
use time::{Duration, OffsetDateTime};

use crate::catalogue;
use crate::clock::truncate_to_micros;
use crate::ids::ConcertId;
use crate::queue::{AdmissionPolicy, DrawRecord, QueueCursor, QueueSettings, SettingsChange, SettingsPatch};

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

    /// How this room admits: its N, M, TTL and cap, and how long an absent buyer keeps a place.
    #[must_use]
    pub fn policy(&self) -> AdmissionPolicy {
        AdmissionPolicy { abandon_after: self.abandon_after, ..self.settings.admission }
    }

    /// Whether the room's pre-queue is to be drawn at `now`: it draws at the opening, the
    /// opening has come, and the line (`cursor`) has no draw yet.
    #[must_use]
    pub fn draw_due_at(&self, cursor: &QueueCursor, now: OffsetDateTime) -> bool {
        self.draw_at_open && cursor.draw.is_none() && self.opens_at.is_some_and(|t| now >= t)
    }

    /// `Some(opens_at)` while the line's order is not known yet at `now`: before the opening,
    /// and after it until the draw when the room draws. WAITING tokens have no position then.
    #[must_use]
    pub fn order_pending_at(&self, cursor: &QueueCursor, now: OffsetDateTime) -> Option<OffsetDateTime> {
        let opens = self.opens_at?;
        (now < opens || (self.draw_at_open && cursor.draw.is_none())).then_some(opens)
    }

    /// Whether this room gates `concert`, given every room (a concert of no other room is
    /// `main`'s).
    #[must_use]
    pub fn gates(&self, concert: ConcertId, rooms: &[Room]) -> bool {
        room_of(concert, rooms) == self.id
    }
}

/// The drawn order of a pre-queue of `entrants` tokens: element `i` is the position (1-based)
/// drawn for the `i`-th entrant in the order of their token values (byte-wise, see
/// `QueueStore::draw`). Every order is equally likely;
/// the same seed gives the same order on every instance and for the operator recomputing it:
/// the positions `1..=entrants` in order, shuffled with [`rand::seq::SliceRandom::shuffle`]
/// (rand 0.9, Fisher–Yates) by a `ChaCha20Rng` seeded with `seed_from_u64(seed)`.
#[must_use]
pub fn drawn_positions(seed: u64, entrants: u64) -> Vec<u64> {
    use rand::seq::SliceRandom as _;
    use rand::SeedableRng as _;
    let mut order: Vec<u64> = (1..=entrants).collect();
    order.shuffle(&mut rand_chacha::ChaCha20Rng::seed_from_u64(seed));
    order
}

/// Which room gates a concert: the room that lists it, else `main`.
#[must_use]
pub fn room_of(concert: ConcertId, rooms: &[Room]) -> RoomId {
    rooms.iter().find(|r| !r.id.is_main() && r.concerts.contains(&concert)).map_or_else(RoomId::main, |r| r.id.clone())
}

/// The result of [`crate::ports::QueueStore::draw`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DrawOutcome {
    /// The opening has not come on the store's clock.
    NotDue,
    /// The line's order is drawn: by this call (`fresh`) or by an earlier one.
    Drawn {
        /// The draw.
        record: DrawRecord,
        /// Whether this call made it.
        fresh: bool,
    },
}

/// The result of [`crate::ports::RoomStore::create_room`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CreateRoomOutcome {
    /// Stored.
    Created,
    /// A room with that id exists.
    Exists,
    /// This concert is in another room already.
    ConcertTaken(ConcertId),
    /// No concert has this id.
    UnknownConcert(ConcertId),
}

/// The result of [`crate::ports::RoomStore::update_room`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum UpdateRoomOutcome {
    /// The room as it was and as it is now.
    Updated {
        /// Before the change.
        before: Box<Room>,
        /// After it.
        after: Box<Room>,
    },
    /// No room has this id.
    NotFound,
    /// The domain refused the change for the room as it was.
    Refused(RoomChangeError),
    /// A concert added is in another room already.
    ConcertTaken(ConcertId),
    /// No concert has this id.
    UnknownConcert(ConcertId),
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
            // Stores keep microseconds: a time is what every store gives back.
            opens_at: self.opens_at.map(truncate_to_micros),
            prequeue_opens_at: self.prequeue_opens_at.map(truncate_to_micros),
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
                next.opens_at = opens.map(truncate_to_micros);
            }
            if let Some(pre) = self.prequeue_opens_at {
                next.prequeue_opens_at = pre.map(truncate_to_micros);
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

#[cfg(test)]
mod draw_tests {
    use std::collections::HashMap;

    use super::*;
    use crate::queue::{QueueToken, TokenStatus, TokenValue, TokenView};

    #[test]
    fn the_draw_is_a_permutation_and_the_same_seed_gives_the_same_order() {
        let order = drawn_positions(42, 1_000);
        let mut sorted = order.clone();
        sorted.sort_unstable();
        assert_eq!(sorted, (1..=1_000).collect::<Vec<_>>());
        assert_eq!(order, drawn_positions(42, 1_000));
        assert_ne!(order, drawn_positions(43, 1_000));
        assert!(drawn_positions(7, 0).is_empty());
    }

    #[test]
    fn every_order_of_three_is_equally_likely() {
        // 6,000 draws of 3 entrants: each of the 6 orders ~1,000 times. Chi-square with 5
        // degrees of freedom: P(X > 20.52) = 0.001.
        let mut seen: HashMap<Vec<u64>, u32> = HashMap::new();
        for seed in 0..6_000 {
            *seen.entry(drawn_positions(seed, 3)).or_default() += 1;
        }
        assert_eq!(seen.len(), 6);
        let chi2: f64 = seen.values().map(|&n| (f64::from(n) - 1_000.0).powi(2) / 1_000.0).sum();
        assert!(chi2 < 20.52, "chi-square {chi2} over {seen:?}");
        let fours: std::collections::HashSet<Vec<u64>> = (0..2_000).map(|seed| drawn_positions(seed, 4)).collect();
        assert_eq!(fours.len(), 24, "every order of 4 entrants appears");
    }

    #[test]
    fn a_token_names_its_room_and_main_tokens_stay_bare() {
        let tour = RoomId::parse("tour").unwrap_or_else(|_| RoomId::main());
        let secret = TokenValue::from_bytes([0xab; 32]);
        assert_eq!(secret.clone().in_room(&RoomId::main()), secret);
        let in_tour = secret.clone().in_room(&tour);
        assert_eq!(in_tour.as_str(), format!("tour.{}", secret.as_str()));
        assert_eq!(in_tour.room(), tour);
        assert_eq!(secret.room(), RoomId::main());
        assert_eq!(TokenValue::parse(in_tour.as_str()), Ok(in_tour.clone()));
        for bad in [format!("main.{}", secret.as_str()), format!("Tour.{}", secret.as_str()), "tour.abc".to_owned()] {
            assert!(TokenValue::parse(&bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn a_prequeued_token_has_no_position_until_the_draw() {
        let now = OffsetDateTime::from_unix_timestamp(1_893_456_000).unwrap_or(OffsetDateTime::UNIX_EPOCH);
        let room = Room {
            id: RoomId::parse("tour").unwrap_or_else(|_| RoomId::main()),
            opens_at: Some(now + Duration::seconds(60)),
            prequeue_opens_at: Some(now - Duration::seconds(60)),
            draw_at_open: true,
            ..Room::main(QueueSettings::default())
        };
        let token = QueueToken::new_waiting(
            TokenValue::from_bytes([1; 32]),
            crate::ids::UserId::from_uuid(uuid::Uuid::nil()),
            3,
            now,
        );
        let mut cursor = QueueCursor::default();
        let before = TokenView::in_room(token.clone(), &cursor, &room, now);
        assert_eq!((before.draw_at, before.position, before.status), (room.opens_at, 0, TokenStatus::Waiting));
        let opened = now + Duration::seconds(61);
        assert!(room.draw_due_at(&cursor, opened));
        assert_eq!(TokenView::in_room(token.clone(), &cursor, &room, opened).draw_at, room.opens_at, "not drawn yet");
        cursor.draw = Some(crate::queue::DrawRecord { at: opened, entrants: 5, seed: 1 });
        let after = TokenView::in_room(token, &cursor, &room, opened);
        assert_eq!((after.draw_at, after.position), (None, 3));
        assert!(!room.draw_due_at(&cursor, opened));
    }
}
