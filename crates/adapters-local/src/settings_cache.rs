//! A decorator of a [`SettingsStore`] that serves the waiting room's live settings from memory.
//!
//! The settings are read on every issue, poll and admission tick; they change a few times per
//! on-sale. The contract lets every instance apply an operator's change "at its next scheduler
//! check", so a copy at most `ttl` old (`SCHEDULER_CHECK_MILLIS`, measured on a monotonic
//! clock) is as good as the store's: [`SettingsStore::load`] re-reads the store once the copy
//! is older than that, and [`SettingsStore::load_in_memory`] answers only while it is fresh, so
//! a poll answered from memory never uses settings older than one check period. An update made
//! through this instance drops the copy, so the next load reads the store and sees it at once;
//! a load that started before the update and returns after it is not kept (it may have read
//! the settings from before the update).

use std::sync::{Arc, PoisonError, RwLock, RwLockWriteGuard};
use std::time::Duration;

use domain::audit::OperatorNote;
use domain::ports::{SettingsStore, StoreError};
use domain::queue::{QueueSettings, SettingsPatch};

use crate::stamped::Stamped;
use crate::ticker::Ticker;

/// A [`SettingsStore`] with an in-memory copy at most `ttl` old (see the module docs).
pub struct CachedSettings {
    inner: Arc<dyn SettingsStore>,
    ticker: Arc<dyn Ticker>,
    ttl: Duration,
    copy: RwLock<Stamped<QueueSettings>>,
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
        Self { inner, ticker, ttl, copy: RwLock::default() }
    }

    fn copy(&self) -> RwLockWriteGuard<'_, Stamped<QueueSettings>> {
        self.copy.write().unwrap_or_else(PoisonError::into_inner)
    }

    /// Re-reads the store whatever the copy's age, and keeps what it read (unless an update of
    /// this instance came meanwhile). Called ahead of the copy's expiry (`app`'s keeper, a few
    /// times per `ttl`) so that polls answered from memory never meet a stale copy: each
    /// would hop to a blocking thread and queue for a store slot to read the settings again.
    ///
    /// # Errors
    /// The store's, when it fails; the copy is left as it was.
    pub fn refresh(&self) -> Result<QueueSettings, StoreError> {
        let now = self.ticker.now();
        let start = self.copy.read().unwrap_or_else(PoisonError::into_inner).start(now);
        let settings = self.inner.load()?;
        // A slower read must not replace a newer copy.
        self.copy().keep(start, settings, |_, held_at| held_at > now);
        Ok(settings)
    }
}

impl SettingsStore for CachedSettings {
    fn load(&self) -> Result<QueueSettings, StoreError> {
        if let Some(settings) = self.load_in_memory() {
            return Ok(settings);
        }
        self.refresh()
    }

    fn load_in_memory(&self) -> Option<QueueSettings> {
        self.copy.read().unwrap_or_else(PoisonError::into_inner).fresh(self.ticker.now(), self.ttl)
    }

    fn update(
        &self,
        patch: &SettingsPatch,
        note: Option<&OperatorNote>,
    ) -> Result<(QueueSettings, QueueSettings), StoreError> {
        let updated = self.inner.update(patch, note)?;
        // Dropped rather than replaced: concurrent updates may return in another order than
        // they committed, so this one's result may already be older than the store's. The next
        // load reads the store, so this instance sees its own change at once all the same; a
        // load already under way is not kept.
        self.copy().invalidate();
        Ok(updated)
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, reason = "test code")]

    use domain::ports::MockSettingsStore;

    use domain::queue::SettingsChange;

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
        inner.expect_update().times(1).returning(move |_, _| Ok((QueueSettings::default(), paused)));
        let s = CachedSettings::new(Arc::new(inner), Arc::new(ticker.clone()), Duration::from_secs(1));
        assert_eq!(s.load_in_memory(), None);
        assert_eq!(s.load().unwrap(), QueueSettings::default());
        assert_eq!(s.load().unwrap(), QueueSettings::default(), "from memory");
        ticker.advance(Duration::from_secs(1));
        assert_eq!(s.load_in_memory(), None, "stale");
        assert_eq!(s.load().unwrap(), QueueSettings::default(), "re-read");
        let patch = SettingsPatch::new(SettingsChange { paused: Some(true), ..SettingsChange::default() }).unwrap();
        s.update(&patch, None).unwrap();
        assert_eq!(s.load_in_memory(), None, "an update drops the copy");
        assert_eq!(s.load().unwrap(), paused, "and the next load reads the store");
    }

    /// Issue 22: a refresh re-reads a copy that is still fresh, so a keeper calling it more
    /// often than the ttl keeps polls answered from memory without a gap.
    #[test]
    fn a_refresh_rereads_a_fresh_copy_and_restarts_its_age() {
        let ticker = ManualTicker::new();
        let mut inner = MockSettingsStore::new();
        inner.expect_load().times(3).returning(|| Ok(QueueSettings::default()));
        let s = CachedSettings::new(Arc::new(inner), Arc::new(ticker.clone()), Duration::from_secs(3));
        s.refresh().unwrap();
        for _ in 0..2 {
            ticker.advance(Duration::from_secs(2));
            assert!(s.load_in_memory().is_some(), "read 2 s ago: fresh");
            s.refresh().unwrap();
        }
        ticker.advance(Duration::from_secs(2));
        assert!(s.load_in_memory().is_some(), "2 s after the last refresh, 6 s after the first");
        assert_eq!(s.load().unwrap(), QueueSettings::default(), "fresh: no read");
    }

    #[test]
    fn a_load_that_started_before_our_update_is_not_kept() {
        use std::sync::mpsc;

        let ticker = ManualTicker::new();
        let paused = QueueSettings { paused: true, ..QueueSettings::default() };
        let (started_tx, started_rx) = mpsc::channel();
        let (updated_tx, updated_rx) = mpsc::channel::<()>();
        let updated_rx = std::sync::Mutex::new(updated_rx);
        let mut inner = MockSettingsStore::new();
        // The slow load: it reads the settings from before the update, and returns only once
        // the update is over.
        inner.expect_load().times(1).returning(move || {
            started_tx.send(()).unwrap();
            updated_rx.lock().unwrap().recv().unwrap();
            Ok(QueueSettings::default())
        });
        inner.expect_update().times(1).returning(move |_, _| Ok((QueueSettings::default(), paused)));
        inner.expect_load().times(1).returning(move || Ok(paused));
        let s = Arc::new(CachedSettings::new(Arc::new(inner), Arc::new(ticker), Duration::from_secs(1)));

        let slow = std::thread::spawn({
            let s = s.clone();
            move || s.load().unwrap()
        });
        started_rx.recv().unwrap();
        s.update(
            &SettingsPatch::new(SettingsChange { paused: Some(true), ..SettingsChange::default() }).unwrap(),
            None,
        )
        .unwrap();
        updated_tx.send(()).unwrap();
        assert_eq!(slow.join().unwrap(), QueueSettings::default(), "the caller gets what it read");
        assert_eq!(s.load_in_memory(), None, "but the pre-update settings are not kept");
        assert_eq!(s.load().unwrap(), paused, "so the next load reads the store");
    }
}
