//! Time, injected. Every rule that depends on "now" reads it from a [`Clock`] so that tests move
//! a [`ManualClock`] instead of sleeping.

use std::sync::{Arc, Mutex, PoisonError};

use time::{Duration, OffsetDateTime};

/// The source of the current time.
#[cfg_attr(any(test, feature = "mocks"), mockall::automock)]
pub trait Clock: Send + Sync {
    /// The current instant, UTC.
    fn now(&self) -> OffsetDateTime;
}

/// The wall clock.
#[derive(Debug, Clone, Copy, Default)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> OffsetDateTime {
        // Microsecond precision: PostgreSQL's timestamptz keeps no more, and a value that
        // round-trips unchanged keeps boundary comparisons identical in both adapters.
        truncate_to_micros(OffsetDateTime::now_utc())
    }
}

/// Drops sub-microsecond precision (what `timestamptz` stores).
#[must_use]
pub fn truncate_to_micros(t: OffsetDateTime) -> OffsetDateTime {
    let micros = t.microsecond();
    t.replace_microsecond(micros).unwrap_or(t)
}

/// A clock that only moves when told to. Cloning shares the same time.
#[derive(Debug, Clone)]
pub struct ManualClock(Arc<Mutex<OffsetDateTime>>);

impl ManualClock {
    /// A clock stopped at `start` (truncated to microseconds).
    #[must_use]
    pub fn new(start: OffsetDateTime) -> Self {
        Self(Arc::new(Mutex::new(truncate_to_micros(start))))
    }

    /// A clock stopped at a fixed, recent instant (2030-01-01T00:00:00Z), handy in tests.
    #[must_use]
    pub fn at_epoch() -> Self {
        Self::new(OffsetDateTime::from_unix_timestamp(1_893_456_000).unwrap_or(OffsetDateTime::UNIX_EPOCH))
    }

    /// Moves the clock forward (or back, with a negative duration).
    pub fn advance(&self, by: Duration) {
        let mut now = self.0.lock().unwrap_or_else(PoisonError::into_inner);
        *now += by;
    }

    /// Sets the clock.
    pub fn set(&self, to: OffsetDateTime) {
        *self.0.lock().unwrap_or_else(PoisonError::into_inner) = truncate_to_micros(to);
    }
}

impl Clock for ManualClock {
    fn now(&self) -> OffsetDateTime {
        *self.0.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn manual_clock_moves_only_when_told_and_clones_share_time() {
        let clock = ManualClock::at_epoch();
        let other = clock.clone();
        let start = clock.now();
        assert_eq!(clock.now(), start);
        other.advance(Duration::seconds(5));
        assert_eq!(clock.now(), start + Duration::seconds(5));
    }

    #[test]
    fn system_clock_has_microsecond_precision() {
        let now = SystemClock.now();
        assert_eq!(now.nanosecond() % 1_000, 0);
    }
}
