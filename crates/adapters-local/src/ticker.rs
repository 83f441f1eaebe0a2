//! A monotonic clock for the caches' freshness: it never jumps with the wall clock (NTP steps,
//! an operator's `date`), and tests move a [`ManualTicker`] instead of sleeping.

use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

/// A source of monotonic instants.
pub trait Ticker: Send + Sync {
    /// Now, on a clock that only moves forward.
    fn now(&self) -> Instant;
}

/// `std::time::Instant::now`.
#[derive(Debug, Clone, Copy, Default)]
pub struct SystemTicker;

impl Ticker for SystemTicker {
    fn now(&self) -> Instant {
        Instant::now()
    }
}

/// A ticker that moves only when told to; clones share it.
#[derive(Debug, Clone)]
pub struct ManualTicker(Arc<Mutex<Instant>>);

impl ManualTicker {
    /// Starts at the real now.
    #[must_use]
    pub fn new() -> Self {
        Self(Arc::new(Mutex::new(Instant::now())))
    }

    /// Moves forward.
    pub fn advance(&self, by: Duration) {
        *self.0.lock().unwrap_or_else(PoisonError::into_inner) += by;
    }
}

impl Default for ManualTicker {
    fn default() -> Self {
        Self::new()
    }
}

impl Ticker for ManualTicker {
    fn now(&self) -> Instant {
        *self.0.lock().unwrap_or_else(PoisonError::into_inner)
    }
}
