//! A decorator of a [`SettingsStore`] that serves the waiting room's live settings from memory.
//!
//! The settings are read on every issue, poll and admission tick; they change a few times per
//! on-sale. The contract lets every instance apply an operator's change "at its next scheduler
//! check", so a copy at most `ttl` old (`SCHEDULER_CHECK_MILLIS`, measured on a monotonic
//! clock) is as good as the store's: [`SettingsStore::load`] re-reads the store once the copy
//! is older than that, and [`SettingsStore::load_in_memory`] answers only while it is fresh, so
//! a poll answered from memory never uses settings older than one check period. An update made
//! through this instance drops the copy, so the next load reads the store and sees it at once.

use std::sync::{Arc, PoisonError, RwLock};
use std::time::{Duration, Instant};

use domain::ports::{SettingsStore, StoreError};
use domain::queue::{QueueSettings, SettingsPatch};

use crate::ticker::Ticker;

/// A [`SettingsStore`] with an in-memory copy at most `ttl` old (see the module docs).
pub struct CachedSettings {
    inner: Arc<dyn SettingsStore>,
    ticker: Arc<dyn Ticker>,
    ttl: Duration,
    copy: RwLock<Option<(QueueSettings, Instant)>>,
}

impl std::fmt::Debug for CachedSettings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CachedSettings").field("ttl", &self.ttl).finish_non_exhaustive()
    }
}

impl CachedSettings {
    /// Wraps `inner`, keeping a copy for `ttl`.
    #[must_use]
    pub fn new(inner: Arc<dyn SettingsStore>, ticker: Arc<dyn Ticker>, ttl: Duration) -> Self {
        Self { inner, ticker, ttl, copy: RwLock::new(None) }
    }

    fn keep(&self, settings: QueueSettings, read_at: Instant) {
        let mut copy = self.copy.write().unwrap_or_else(PoisonError::into_inner);
        // A slower read must not replace a newer copy.
        if copy.is_none_or(|(_, at)| at <= read_at) {
            *copy = Some((settings, read_at));
        }
    }
}

impl SettingsStore for CachedSettings {
    fn load(&self) -> Result<QueueSettings, StoreError> {
        if let Some(settings) = self.load_in_memory() {
            return Ok(settings);
        }
        let started = self.ticker.now();
        let settings = self.inner.load()?;
        self.keep(settings, started);
        Ok(settings)
    }

    fn load_in_memory(&self) -> Option<QueueSettings> {
        let now = self.ticker.now();
        let copy = *self.copy.read().unwrap_or_else(PoisonError::into_inner);
        copy.filter(|(_, at)| now.saturating_duration_since(*at) < self.ttl).map(|(s, _)| s)
    }

    fn update(&self, patch: &SettingsPatch) -> Result<(QueueSettings, QueueSettings), StoreError> {
        let updated = self.inner.update(patch)?;
        // Dropped rather than replaced: concurrent updates may return in another order than
        // they committed, so this one's result may already be older than the store's. The next
        // load reads the store, so this instance sees its own change at once all the same.
        *self.copy.write().unwrap_or_else(PoisonError::into_inner) = None;
        Ok(updated)
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, reason = "test code")]

    use domain::ports::MockSettingsStore;

    use super::*;
    use crate::ticker::ManualTicker;

    #[test]
    fn settings_are_reread_once_per_ttl_and_updates_are_seen_at_once() {
        let ticker = ManualTicker::new();
        let mut inner = MockSettingsStore::new();
        let loads = std::sync::Mutex::new(vec![QueueSettings::default(), QueueSettings::default()].into_iter());
        let paused_after = QueueSettings { paused: true, ..QueueSettings::default() };
        inner.expect_load().times(3).returning(move || Ok(loads.lock().unwrap().next().unwrap_or(paused_after)));
        let paused = QueueSettings { paused: true, ..QueueSettings::default() };
        inner.expect_update().times(1).returning(move |_| Ok((QueueSettings::default(), paused)));
        let s = CachedSettings::new(Arc::new(inner), Arc::new(ticker.clone()), Duration::from_secs(1));
        assert_eq!(s.load_in_memory(), None);
        assert_eq!(s.load().unwrap(), QueueSettings::default());
        assert_eq!(s.load().unwrap(), QueueSettings::default(), "from memory");
        ticker.advance(Duration::from_secs(1));
        assert_eq!(s.load_in_memory(), None, "stale");
        assert_eq!(s.load().unwrap(), QueueSettings::default(), "re-read");
        let patch = SettingsPatch::new(Some(true), None, None, None, None).unwrap();
        s.update(&patch).unwrap();
        assert_eq!(s.load_in_memory(), None, "an update drops the copy");
        assert_eq!(s.load().unwrap(), paused, "and the next load reads the store");
    }
}
