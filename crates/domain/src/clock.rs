//! Time, injected. Every rule that depends on "now" reads it from a [`Clock`] so that tests move
//! a [`ManualClock`] instead of sleeping. The wall clock itself is an adapter (it lives with the
//! other operating-system adapters, outside this crate).
//!
//! Times are kept at microsecond precision: PostgreSQL's `timestamptz` keeps no more, and a value
//! that round-trips unchanged keeps boundary comparisons identical in every store.

use std::sync::{Arc, Mutex, PoisonError};

use time::{Duration, OffsetDateTime};

use crate::error::StoreError;

/// The source of the current time.
#[cfg_attr(any(test, feature = "mocks"), mockall::automock)]
pub trait Clock: Send + Sync {
    /// The current instant, UTC, at microsecond precision.
    fn now(&self) -> OffsetDateTime;
}

/// The clock of the store that decides expiries, read over the network: the one time every
/// instance sharing that store agrees on.
///
/// Every expiry that more than one instance can act on (a hold's end, a token's TTL, an
/// idempotency key's lifetime, an admission's interval) is decided on the store's clock, never
/// on an instance's: an instance whose own clock runs 30 s fast must neither release another
/// instance's hold 30 s early nor stamp a hold that ends 30 s late. Instances read it through
/// a [`Clock`] that follows the store (the `adapters-local` crate's `StoreClock`), so the rules
/// keep taking one `now` per use case.
#[cfg_attr(any(test, feature = "mocks"), mockall::automock)]
pub trait StoreTime: Send + Sync {
    /// The store's clock now, as the store reads it (PostgreSQL `clock_timestamp()`, Redis
    /// `TIME`), at microsecond precision.
    ///
    /// # Errors
    /// [`StoreError`] when the store cannot be asked.
    fn read_time(&self) -> Result<OffsetDateTime, StoreError>;
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
        *now = truncate_to_micros(*now + by);
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

/// Another clock shifted by a fixed offset: an instance whose clock disagrees with the others
/// (clock-skew tests).
#[derive(Clone)]
pub struct SkewedClock {
    inner: Arc<dyn Clock>,
    offset: Duration,
}

impl SkewedClock {
    /// `inner` shifted by `offset` (positive: ahead).
    #[must_use]
    pub fn new(inner: Arc<dyn Clock>, offset: Duration) -> Self {
        Self { inner, offset }
    }
}

impl std::fmt::Debug for SkewedClock {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SkewedClock").field("offset", &self.offset).finish_non_exhaustive()
    }
}

impl Clock for SkewedClock {
    fn now(&self) -> OffsetDateTime {
        truncate_to_micros(self.inner.now() + self.offset)
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
    fn a_skewed_clock_follows_its_inner_clock_at_an_offset() {
        let clock = ManualClock::at_epoch();
        let ahead = SkewedClock::new(Arc::new(clock.clone()), Duration::seconds(30));
        assert_eq!(ahead.now(), clock.now() + Duration::seconds(30));
        clock.advance(Duration::seconds(1));
        assert_eq!(ahead.now(), clock.now() + Duration::seconds(30));
    }
}
