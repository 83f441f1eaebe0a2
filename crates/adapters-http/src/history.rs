//! The recent figures of each room, kept in this instance's memory for the operator's console
//! (`GET /admin/rooms/{roomId}/history`): one sample every [`SAMPLE_EVERY`], the last
//! [`SAMPLES`] per room (30 minutes). Bounded: a room no longer listed is forgotten at the next
//! sample, so memory is at most rooms × [`SAMPLES`] small records. The samples are this
//! instance's reads of the store; another instance holds its own (the route names which).

use std::collections::{HashMap, VecDeque};
use std::sync::Mutex;
use std::time::Duration;

use domain::service::RoomView;
use time::OffsetDateTime;

/// How often the app samples the rooms.
pub const SAMPLE_EVERY: Duration = Duration::from_secs(10);

/// How many samples each room keeps: 30 minutes at one per [`SAMPLE_EVERY`].
pub const SAMPLES: usize = 180;

/// One room's figures at one time (the store's clock).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Sample {
    /// When the store read them.
    pub at: OffsetDateTime,
    /// WAITING tokens.
    pub waiting: u64,
    /// Unexpired ACTIVE tokens.
    pub active: u64,
    /// The last position admitted or skipped (cumulative).
    pub admitted_through: i64,
    /// Places skipped because their buyer had left (cumulative).
    pub abandoned: u64,
}

impl From<&RoomView> for Sample {
    fn from(v: &RoomView) -> Self {
        Self {
            at: v.stats.now,
            waiting: v.stats.waiting,
            active: v.stats.active,
            admitted_through: v.stats.cursor.admitted_through,
            abandoned: v.stats.abandoned,
        }
    }
}

/// The ring buffers of every room.
#[derive(Debug, Default)]
pub struct RoomHistory {
    rooms: Mutex<HashMap<String, VecDeque<Sample>>>,
}

impl RoomHistory {
    /// Records one sample of every room listed, and forgets the rooms no longer listed.
    pub fn record(&self, rooms: &[RoomView]) {
        let mut held = self.rooms.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        held.retain(|id, _| rooms.iter().any(|v| v.room.id.as_str() == id));
        for view in rooms {
            let line = held.entry(view.room.id.to_string()).or_insert_with(|| VecDeque::with_capacity(SAMPLES));
            if line.len() == SAMPLES {
                line.pop_front();
            }
            line.push_back(Sample::from(view));
        }
    }

    /// A room's samples, oldest first (empty for a room not sampled yet).
    #[must_use]
    pub fn of(&self, room: &str) -> Vec<Sample> {
        let held = self.rooms.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        held.get(room).map(|line| line.iter().copied().collect()).unwrap_or_default()
    }
}

/// This instance as the console names it: host name and process id.
#[must_use]
pub fn instance_name() -> String {
    let host = std::env::var("HOSTNAME")
        .ok()
        .filter(|h| !h.is_empty())
        .or_else(|| std::fs::read_to_string("/etc/hostname").ok().map(|h| h.trim().to_owned()))
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "localhost".to_owned());
    format!("{host}:{}", std::process::id())
}
