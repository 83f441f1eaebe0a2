//! Shared by the scheduler test binaries.

use domain::clock::Clock;
use time::{Duration, OffsetDateTime};

/// Domain time that follows tokio's clock: with `start_paused = true`, advancing tokio time
/// moves both the scheduler's cadence and the "now" its rules read, so nothing sleeps for real.
pub struct TokioClock {
    base: OffsetDateTime,
    start: tokio::time::Instant,
}

impl TokioClock {
    /// Reads `base` at the current tokio instant.
    pub fn starting_at(base: OffsetDateTime) -> Self {
        Self { base, start: tokio::time::Instant::now() }
    }
}

impl Clock for TokioClock {
    fn now(&self) -> OffsetDateTime {
        let elapsed = tokio::time::Instant::now() - self.start;
        self.base + Duration::try_from(elapsed).unwrap_or(Duration::MAX)
    }
}
