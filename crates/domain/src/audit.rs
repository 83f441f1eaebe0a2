//! The operator log: every change an operator makes, with who made it, when, and the state
//! before and after, kept in the store with the change itself (a change without its line, or a
//! line without its change, cannot commit).
//!
//! The use cases hand the stores an [`OperatorNote`] (who, when) with each change; the store
//! writes the line from the values it read and wrote in the same unit of work, through the
//! constructors of [`OperatorAction`], so "before" is the value the change replaced, not one an
//! instance had cached.

use std::fmt::Write as _;

use time::OffsetDateTime;

use crate::catalogue::{NewConcert, NewSchedule};
use crate::queue::QueueSettings;
use crate::room::Room;

/// Who makes a change, and when (the store's clock).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OperatorNote {
    /// The operator's short id: the first 8 hex digits of the SHA-256 of their token.
    pub actor: String,
    /// When.
    pub at: OffsetDateTime,
}

/// What kind of change a line records.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum AuditAction {
    /// The waiting room's settings (`PATCH /admin/queue`).
    QueueUpdate,
    /// A concert with its schedules (`POST /admin/concerts`).
    ConcertCreate,
    /// A schedule added to a concert (`POST /admin/concerts/{id}/schedules`).
    ScheduleCreate,
    /// A room created (`POST /admin/rooms`).
    RoomCreate,
    /// A room changed (`PATCH /admin/rooms/{id}`).
    RoomUpdate,
}

impl AuditAction {
    /// Every action.
    pub const ALL: [Self; 5] =
        [Self::QueueUpdate, Self::ConcertCreate, Self::ScheduleCreate, Self::RoomCreate, Self::RoomUpdate];

    /// Its spelling in the log and on the wire (`queue.update`, ...).
    #[must_use]
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::QueueUpdate => "queue.update",
            Self::ConcertCreate => "concert.create",
            Self::ScheduleCreate => "schedule.create",
            Self::RoomCreate => "room.create",
            Self::RoomUpdate => "room.update",
        }
    }

    /// The action spelled `s`.
    #[must_use]
    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|a| a.as_str() == s)
    }
}

/// One line of the operator log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OperatorAction {
    /// When (the store's clock).
    pub at: OffsetDateTime,
    /// Who (see [`OperatorNote::actor`]).
    pub actor: String,
    /// What kind of change.
    pub action: AuditAction,
    /// What it changed: `main` for the waiting room, a concert's or a schedule's id.
    pub target: String,
    /// The state it replaced, in one line; `None` for a creation.
    pub before: Option<String>,
    /// The state it made, in one line.
    pub after: String,
}

impl OperatorAction {
    /// A change of the waiting room's settings from `before` to `after`.
    #[must_use]
    pub fn queue_update(note: &OperatorNote, before: &QueueSettings, after: &QueueSettings) -> Self {
        Self {
            at: note.at,
            actor: note.actor.clone(),
            action: AuditAction::QueueUpdate,
            target: "main".to_owned(),
            before: Some(before.to_string()),
            after: after.to_string(),
        }
    }

    /// A concert created with its schedules.
    #[must_use]
    pub fn concert_created(note: &OperatorNote, concert: &NewConcert) -> Self {
        let seats: usize = concert.schedules.iter().map(|s| s.seats.len()).sum();
        let mut after =
            format!("title={:?} schedules={} seats={seats}", concert.concert.title, concert.schedules.len());
        for s in &concert.schedules {
            let _ = write!(after, " schedule={}@{}", s.id, rfc3339(s.starts_at));
        }
        Self {
            at: note.at,
            actor: note.actor.clone(),
            action: AuditAction::ConcertCreate,
            target: concert.concert.id.to_string(),
            before: None,
            after,
        }
    }

    /// A schedule added to a concert.
    #[must_use]
    pub fn schedule_added(note: &OperatorNote, schedule: &NewSchedule) -> Self {
        Self {
            at: note.at,
            actor: note.actor.clone(),
            action: AuditAction::ScheduleCreate,
            target: schedule.id.to_string(),
            before: None,
            after: format!(
                "concert={} starts_at={} seats={}",
                schedule.concert_id,
                schedule.starts_at,
                schedule.seats.len()
            ),
        }
    }
}

impl OperatorAction {
    /// A room created.
    #[must_use]
    pub fn room_created(note: &OperatorNote, room: &Room) -> Self {
        Self {
            at: note.at,
            actor: note.actor.clone(),
            action: AuditAction::RoomCreate,
            target: room.id.to_string(),
            before: None,
            after: room_line(room),
        }
    }

    /// A room changed from `before` to `after`.
    #[must_use]
    pub fn room_updated(note: &OperatorNote, before: &Room, after: &Room) -> Self {
        Self {
            at: note.at,
            actor: note.actor.clone(),
            action: AuditAction::RoomUpdate,
            target: after.id.to_string(),
            before: Some(room_line(before)),
            after: room_line(after),
        }
    }
}

/// A room in one line: `name="Tour" concerts=2 opens_at=... prequeue_opens_at=none draw=true
/// abandon_after=0s closed=false paused=false batch=... `.
fn room_line(room: &Room) -> String {
    let at = |t: Option<OffsetDateTime>| t.map_or_else(|| "none".to_owned(), rfc3339);
    format!(
        "name={:?} concerts={} opens_at={} prequeue_opens_at={} draw={} abandon_after={}s closed={} {}",
        room.name,
        room.concerts.iter().map(ToString::to_string).collect::<Vec<_>>().join(","),
        at(room.opens_at),
        at(room.prequeue_opens_at),
        room.draw_at_open,
        room.abandon_after.map_or(0, time::Duration::whole_seconds),
        room.closed,
        room.settings
    )
}

/// A time as the contract writes times.
fn rfc3339(t: OffsetDateTime) -> String {
    t.to_offset(time::UtcOffset::UTC).format(&time::format_description::well_known::Rfc3339).unwrap_or_default()
}

/// A line of the log as stored: its number (the log's order) and the action.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuditEntry {
    /// Its number: increasing in the order the changes committed.
    pub seq: i64,
    /// What was done.
    pub action: OperatorAction,
}

/// A page of the operator log, newest first.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuditPage {
    /// The lines, newest first.
    pub entries: Vec<AuditEntry>,
    /// Pass as `before` for the next (older) page; `None` on the last page.
    pub next_before: Option<i64>,
}

/// The page sizes of `GET /admin/audit`.
pub const AUDIT_PAGE: std::ops::RangeInclusive<u32> = 1..=100;
/// The page size when none is asked for.
pub const AUDIT_PAGE_DEFAULT: u32 = 50;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn actions_are_spelled_once() {
        for a in AuditAction::ALL {
            assert_eq!(AuditAction::parse(a.as_str()), Some(a));
        }
        assert_eq!(AuditAction::parse("nope"), None);
    }

    #[test]
    fn a_settings_line_holds_both_states_in_one_line_each() {
        let note = OperatorNote { actor: "0347f1ea".into(), at: OffsetDateTime::UNIX_EPOCH };
        let before = QueueSettings::default();
        let after = QueueSettings { paused: true, ..before };
        let line = OperatorAction::queue_update(&note, &before, &after);
        assert_eq!(line.before.as_deref(), Some("paused=false batch=100 interval=60s ttl=600s max_active=none"));
        assert_eq!(line.after, "paused=true batch=100 interval=60s ttl=600s max_active=none");
        assert_eq!(
            (line.action, line.target.as_str(), line.actor.as_str()),
            (AuditAction::QueueUpdate, "main", "0347f1ea")
        );
    }
}
