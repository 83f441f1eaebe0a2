//! A read-through cache in front of a [`QueueStore`] that answers polls of WAITING tokens from
//! memory.
//!
//! Polling is the hottest call of a waiting room: everyone in a line of a million polls every
//! few seconds, and each poll is worth nothing but a position. Two facts make a poll cacheable:
//!
//! - A WAITING token's stored facts (`value`, `user_id`, `seq`, `issued_at`) never change while it
//!   waits, and a WAITING token leaves the line only by admission, which advances the shared
//!   cursor past its `seq` (a payment expires only the payer's live token, which is ACTIVE, since
//!   a user has one live token and paying needs an ACTIVE one).
//! - So a cached WAITING token with `seq > admitted_through` of a recent cursor is still WAITING,
//!   and its position is `seq - admitted_through`.
//!
//! The cursor is re-read from the store at most every `cursor_ttl` (one cheap query shared by all
//! pollers of this instance), and at once after this instance admitted anyone. Polls may
//! therefore lag another instance's admission by up to `cursor_ttl`: a token admitted elsewhere
//! reads as WAITING at position 1..=N for that long. Everything that grants access is exact:
//! [`QueueStore::find`] (authorization of every protected call), issue, admission and expiry
//! always go to the store.
//!
//! The cache is bounded: at `capacity` entries it first drops tokens the cursor has passed, and
//! if that is not enough it stops caching new tokens (they are read from the store as before).

use std::collections::HashMap;
use std::sync::{Arc, PoisonError, RwLock};

use time::{Duration, OffsetDateTime};

use crate::clock::Clock;
use crate::ids::UserId;
use crate::ports::{IssueOutcome, QueueStore, StoreError};
use crate::queue::{AdmissionOutcome, AdmissionPolicy, QueueCursor, QueueToken, TokenStatus, TokenValue};

/// Settings of a [`CachedQueue`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct QueueCacheSettings {
    /// How stale the cursor (and so a poll) may be.
    pub cursor_ttl: Duration,
    /// Most WAITING tokens kept.
    pub capacity: usize,
}

impl Default for QueueCacheSettings {
    fn default() -> Self {
        Self { cursor_ttl: Duration::milliseconds(250), capacity: 100_000 }
    }
}

#[derive(Debug, Default)]
struct CacheState {
    /// The cursor and when it was read.
    cursor: Option<(QueueCursor, OffsetDateTime)>,
    /// WAITING tokens by value.
    waiting: HashMap<TokenValue, QueueToken>,
}

/// A [`QueueStore`] that answers polls of WAITING tokens from memory (see the module docs).
pub struct CachedQueue {
    inner: Arc<dyn QueueStore>,
    clock: Arc<dyn Clock>,
    settings: QueueCacheSettings,
    state: RwLock<CacheState>,
}

impl std::fmt::Debug for CachedQueue {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CachedQueue").field("settings", &self.settings).finish_non_exhaustive()
    }
}

impl CachedQueue {
    /// Wraps `inner`; `clock` decides when the cached cursor is stale.
    #[must_use]
    pub fn new(inner: Arc<dyn QueueStore>, clock: Arc<dyn Clock>, settings: QueueCacheSettings) -> Self {
        Self { inner, clock, settings, state: RwLock::new(CacheState::default()) }
    }

    /// How many WAITING tokens are cached.
    #[must_use]
    pub fn len(&self) -> usize {
        self.state.read().unwrap_or_else(PoisonError::into_inner).waiting.len()
    }

    /// Whether nothing is cached.
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    fn fresh_cursor(&self, now: OffsetDateTime) -> Option<QueueCursor> {
        let state = self.state.read().unwrap_or_else(PoisonError::into_inner);
        state.cursor.filter(|(_, read_at)| now - *read_at < self.settings.cursor_ttl).map(|(c, _)| c)
    }

    fn cursor_at(&self, now: OffsetDateTime) -> Result<QueueCursor, StoreError> {
        if let Some(cursor) = self.fresh_cursor(now) {
            return Ok(cursor);
        }
        let cursor = self.inner.cursor()?;
        self.remember_cursor(cursor, now);
        Ok(cursor)
    }

    fn remember_cursor(&self, cursor: QueueCursor, now: OffsetDateTime) {
        let mut state = self.state.write().unwrap_or_else(PoisonError::into_inner);
        // Never move the cached cursor backwards (a slower read may finish after a newer one).
        let newer = state.cursor.is_none_or(|(c, _)| cursor.admitted_through >= c.admitted_through);
        if newer {
            state.cursor = Some((cursor, now));
        }
    }

    fn remember_token(&self, token: &QueueToken, cursor: &QueueCursor) {
        let mut state = self.state.write().unwrap_or_else(PoisonError::into_inner);
        if token.status != TokenStatus::Waiting || token.seq <= cursor.admitted_through {
            state.waiting.remove(&token.value);
            return;
        }
        if state.waiting.len() >= self.settings.capacity {
            let through = cursor.admitted_through;
            state.waiting.retain(|_, t| t.seq > through);
            if state.waiting.len() >= self.settings.capacity {
                return;
            }
        }
        state.waiting.insert(token.value.clone(), token.clone());
    }

    fn cached_waiting(&self, value: &TokenValue, cursor: &QueueCursor) -> Option<QueueToken> {
        let state = self.state.read().unwrap_or_else(PoisonError::into_inner);
        state.waiting.get(value).filter(|t| t.seq > cursor.admitted_through).cloned()
    }
}

impl QueueStore for CachedQueue {
    fn issue(&self, user: UserId, value: TokenValue, now: OffsetDateTime) -> Result<IssueOutcome, StoreError> {
        let outcome = self.inner.issue(user, value, now)?;
        if let Some(cursor) = self.fresh_cursor(now) {
            self.remember_token(&outcome.token, &cursor);
        }
        Ok(outcome)
    }

    /// Always the store's answer: this decides access to protected calls.
    fn find(&self, value: &TokenValue) -> Result<Option<QueueToken>, StoreError> {
        self.inner.find(value)
    }

    fn find_with_cursor(&self, value: &TokenValue) -> Result<Option<(QueueToken, QueueCursor)>, StoreError> {
        let now = self.clock.now();
        let cursor = self.cursor_at(now)?;
        if let Some(token) = self.cached_waiting(value, &cursor) {
            return Ok(Some((token, cursor)));
        }
        let found = self.inner.find_with_cursor(value)?;
        if let Some((token, cursor)) = &found {
            self.remember_cursor(*cursor, now);
            self.remember_token(token, cursor);
        }
        Ok(found)
    }

    fn cursor(&self) -> Result<QueueCursor, StoreError> {
        self.cursor_at(self.clock.now())
    }

    fn admit(&self, policy: &AdmissionPolicy, now: OffsetDateTime) -> Result<AdmissionOutcome, StoreError> {
        let outcome = self.inner.admit(policy, now)?;
        if matches!(outcome, AdmissionOutcome::Admitted(n) if n > 0) {
            // Our own admission: stop serving the tokens it let in at once.
            self.state.write().unwrap_or_else(PoisonError::into_inner).cursor = None;
        }
        Ok(outcome)
    }

    fn expire_tokens(&self, now: OffsetDateTime) -> Result<u64, StoreError> {
        self.inner.expire_tokens(now)
    }
}

#[cfg(test)]
mod tests {
    use mockall::predicate::eq;

    use super::*;
    use crate::clock::ManualClock;
    use crate::ports::MockQueueStore;

    fn token(seq: i64) -> QueueToken {
        let mut bytes = [0_u8; 32];
        bytes[..8].copy_from_slice(&seq.to_be_bytes());
        QueueToken::new_waiting(TokenValue::from_bytes(bytes), UserId::random(), seq, ManualClock::at_epoch().now())
    }

    fn cursor(admitted_through: i64) -> QueueCursor {
        QueueCursor { admitted_through, last_admission_at: None }
    }

    fn cache(inner: MockQueueStore, clock: &ManualClock, capacity: usize) -> CachedQueue {
        let settings = QueueCacheSettings { cursor_ttl: Duration::milliseconds(250), capacity };
        CachedQueue::new(Arc::new(inner), Arc::new(clock.clone()), settings)
    }

    #[test]
    fn repeated_polls_of_a_waiting_token_hit_the_store_once() {
        let clock = ManualClock::at_epoch();
        let t = token(10);
        let mut inner = MockQueueStore::new();
        inner.expect_cursor().times(1).returning(|| Ok(cursor(3)));
        let found = t.clone();
        inner.expect_find_with_cursor().times(1).returning(move |_| Ok(Some((found.clone(), cursor(3)))));
        let q = cache(inner, &clock, 10);
        for _ in 0..5 {
            assert_eq!(q.find_with_cursor(&t.value).unwrap(), Some((t.clone(), cursor(3))));
        }
        assert_eq!(q.len(), 1);
    }

    #[test]
    fn the_cursor_is_reread_after_its_ttl_and_an_admitted_token_goes_to_the_store() {
        let clock = ManualClock::at_epoch();
        let t = token(10);
        let mut inner = MockQueueStore::new();
        let mut cursors = vec![cursor(3), cursor(10)].into_iter();
        inner.expect_cursor().times(2).returning(move || Ok(cursors.next().unwrap()));
        let waiting = t.clone();
        let mut active = t.clone();
        active.status = TokenStatus::Active;
        let mut answers = vec![(waiting, cursor(3)), (active.clone(), cursor(10))].into_iter();
        inner.expect_find_with_cursor().times(2).returning(move |_| Ok(answers.next()));
        let q = cache(inner, &clock, 10);

        assert_eq!(q.find_with_cursor(&t.value).unwrap().unwrap().0.status, TokenStatus::Waiting);
        clock.advance(Duration::milliseconds(249));
        assert_eq!(q.find_with_cursor(&t.value).unwrap().unwrap().0.status, TokenStatus::Waiting, "cursor still fresh");
        clock.advance(Duration::milliseconds(1));
        assert_eq!(q.find_with_cursor(&t.value).unwrap(), Some((active, cursor(10))), "admitted: read from the store");
        assert!(q.is_empty(), "an admitted token is dropped from the cache");
    }

    #[test]
    fn authorization_lookups_always_go_to_the_store() {
        let clock = ManualClock::at_epoch();
        let t = token(10);
        let mut inner = MockQueueStore::new();
        let found = t.clone();
        inner.expect_find().with(eq(t.value.clone())).times(3).returning(move |_| Ok(Some(found.clone())));
        let q = cache(inner, &clock, 10);
        for _ in 0..3 {
            assert_eq!(q.find(&t.value).unwrap(), Some(t.clone()));
        }
    }

    #[test]
    fn an_admission_by_this_instance_invalidates_the_cursor_at_once() {
        let clock = ManualClock::at_epoch();
        let mut inner = MockQueueStore::new();
        let mut cursors = vec![cursor(0), cursor(3)].into_iter();
        inner.expect_cursor().times(2).returning(move || Ok(cursors.next().unwrap()));
        inner.expect_admit().times(1).returning(|_, _| Ok(AdmissionOutcome::Admitted(3)));
        let q = cache(inner, &clock, 10);
        assert_eq!(q.cursor().unwrap(), cursor(0));
        let policy = AdmissionPolicy {
            batch: 3,
            interval: Duration::seconds(60),
            active_ttl: Duration::seconds(600),
            max_active: None,
        };
        q.admit(&policy, clock.now()).unwrap();
        assert_eq!(q.cursor().unwrap(), cursor(3), "re-read without waiting for the ttl");
    }

    #[test]
    fn issued_waiting_tokens_are_cached_and_active_ones_are_not() {
        let clock = ManualClock::at_epoch();
        let waiting = token(5);
        let mut active = token(2);
        active.status = TokenStatus::Active;
        let mut inner = MockQueueStore::new();
        inner.expect_cursor().times(1).returning(|| Ok(cursor(2)));
        let mut issued = vec![waiting.clone(), active.clone()].into_iter();
        inner
            .expect_issue()
            .times(2)
            .returning(move |_, _, _| Ok(IssueOutcome { token: issued.next().unwrap(), created: true }));
        let q = cache(inner, &clock, 10);
        q.cursor().unwrap();
        q.issue(waiting.user_id, waiting.value.clone(), clock.now()).unwrap();
        q.issue(active.user_id, active.value.clone(), clock.now()).unwrap();
        assert_eq!(q.len(), 1);
        // Served from memory: the mock has no find_with_cursor expectation.
        assert_eq!(q.find_with_cursor(&waiting.value).unwrap(), Some((waiting, cursor(2))));
    }

    #[test]
    fn the_cache_stays_within_capacity_dropping_admitted_tokens_first() {
        let clock = ManualClock::at_epoch();
        let mut inner = MockQueueStore::new();
        let mut cursors = vec![cursor(0), cursor(2)].into_iter();
        inner.expect_cursor().returning(move || Ok(cursors.next().unwrap_or(cursor(2))));
        let tokens: Vec<QueueToken> = (1..=4).map(token).collect();
        let mut issued = tokens.clone().into_iter();
        inner
            .expect_issue()
            .returning(move |_, _, _| Ok(IssueOutcome { token: issued.next().unwrap(), created: true }));
        let q = cache(inner, &clock, 2);
        q.cursor().unwrap();
        for t in &tokens[..3] {
            q.issue(t.user_id, t.value.clone(), clock.now()).unwrap();
        }
        assert_eq!(q.len(), 2, "full: the third is not cached");
        // Once the cursor passes the first two, they make room.
        clock.advance(Duration::seconds(1));
        q.cursor().unwrap();
        q.issue(tokens[3].user_id, tokens[3].value.clone(), clock.now()).unwrap();
        assert_eq!(q.len(), 1, "admitted tokens dropped, the new one cached");
    }

    #[test]
    fn store_failures_pass_through() {
        let clock = ManualClock::at_epoch();
        let mut inner = MockQueueStore::new();
        inner.expect_cursor().returning(|| Err(StoreError::Unavailable("down".into())));
        let q = cache(inner, &clock, 2);
        assert_eq!(q.find_with_cursor(&token(1).value), Err(StoreError::Unavailable("down".into())));
    }
}
