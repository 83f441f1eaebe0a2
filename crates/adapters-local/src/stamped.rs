//! A store's value kept in memory by a cache, stamped with when its read started, and guarded
//! against reads that straddle a change made through this instance.
//!
//! A change drops the copy and bumps a generation. A read records the generation when it
//! starts ([`Stamped::start`]) and is kept only if no change came in between: a read that
//! started before the change may have seen the store before it, and keeping it would serve
//! the old value for up to a whole `ttl` after this instance's own change.

use std::time::{Duration, Instant};

/// When a read of the store started: the generation then, and the instant its age counts from.
#[derive(Debug, Clone, Copy)]
pub(crate) struct ReadStart {
    generation: u64,
    at: Instant,
}

/// The kept copy (see the module docs).
#[derive(Debug)]
pub(crate) struct Stamped<T> {
    copy: Option<(T, Instant)>,
    generation: u64,
}

impl<T> Default for Stamped<T> {
    fn default() -> Self {
        Self { copy: None, generation: 0 }
    }
}

impl<T: Clone> Stamped<T> {
    /// A read starting `now`.
    pub(crate) fn start(&self, now: Instant) -> ReadStart {
        ReadStart { generation: self.generation, at: now }
    }

    /// The copy, if its read started less than `ttl` before `now`.
    pub(crate) fn fresh(&self, now: Instant, ttl: Duration) -> Option<T> {
        self.copy.as_ref().filter(|(_, at)| now.saturating_duration_since(*at) < ttl).map(|(value, _)| value.clone())
    }

    /// Drops the copy after a change made through this instance; reads started before it are
    /// not kept.
    pub(crate) fn invalidate(&mut self) {
        self.generation += 1;
        self.copy = None;
    }

    /// Whether no change came in since `start`.
    pub(crate) fn unchanged_since(&self, start: ReadStart) -> bool {
        start.generation == self.generation
    }

    /// Keeps `value`, read since `start`, in place of whatever is held, and refuses every read
    /// that started before this call, as a change made through this instance does.
    pub(crate) fn replace(&mut self, start: ReadStart, value: T) {
        self.generation += 1;
        self.copy = Some((value, start.at));
    }

    /// Keeps `value`, read since `start`, unless a change came in between or
    /// `held_is_newer(held, held_read_at)` says the copy held is newer. Returns whether it was
    /// kept.
    pub(crate) fn keep(&mut self, start: ReadStart, value: T, held_is_newer: impl FnOnce(&T, Instant) -> bool) -> bool {
        if !self.unchanged_since(start) || self.copy.as_ref().is_some_and(|(held, at)| held_is_newer(held, *at)) {
            return false;
        }
        self.copy = Some((value, start.at));
        true
    }
}
