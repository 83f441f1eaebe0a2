//! A decorator of a [`QueueStore`] that answers polls of WAITING tokens from memory, without
//! blocking, for a line of a million.
//!
//! Polling is the hottest call of a waiting room: everyone in line polls every few seconds, and
//! each poll is worth nothing but a position. Two facts make a poll cacheable:
//!
//! - A WAITING token's stored facts (`value`, `user_id`, `seq`, `issued_at`) never change while
//!   it waits, and a WAITING token leaves the line only by admission, which advances the shared
//!   cursor past its `seq` (a payment uses up only the ACTIVE token that paid).
//! - So a cached WAITING token with `seq > admitted_through` of a recent cursor is still
//!   WAITING, and its position is `seq - admitted_through`.
//!
//! What is served from memory: [`QueueStore::find_in_memory`] and
//! [`QueueStore::find_with_cursor`] for cached WAITING tokens, and [`QueueStore::cursor`], with
//! a cursor at most `cursor_ttl` old, measured on a monotonic clock ([`Ticker`]). When the copy
//! goes stale, the next poll answered from memory claims its refresh and goes to the store;
//! until that refresh lands (at most another `cursor_ttl`), the other polls are answered from
//! the stale copy instead of all hopping to the store at once (a crowd of polls would queue for
//! the store's slots behind issues and payments: the tail of polls at an opening). A token
//! admitted by *another* instance may therefore read WAITING (at position 1..=N) for up to
//! twice `cursor_ttl`. This instance's own admissions drop the cached cursor at once, and a cursor
//! read that started before such an admission is never written back. Everything that grants
//! access or changes state goes to the store: [`QueueStore::find`] (authorization of every
//! protected call), issue, admission, expiry, `use_up`.
//!
//! Layout: tokens are kept twice, by value (a hash map, for lookups) and by `seq` (a B-tree),
//! so that a cursor advance drops the whole admitted range with one `split_off` and touches
//! only the tokens it drops; nothing ever scans the cache. Each entry is about 150 bytes, so a
//! million cached tokens take about 150 MB; past `capacity` new tokens are not cached (their
//! polls go to the store) until admissions make room.

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, PoisonError, RwLock, RwLockReadGuard, RwLockWriteGuard};
use std::time::{Duration, Instant};

use domain::ids::UserId;
use domain::ports::{IssueOutcome, QueueStore, StoreError};
use domain::queue::{AdmissionOutcome, AdmissionPolicy, QueueCursor, QueueStats, QueueToken, TokenStatus, TokenValue};
use domain::room::DrawOutcome;
use time::OffsetDateTime;

use crate::stamped::{ReadStart, Stamped};
use crate::ticker::Ticker;

/// Settings of a [`CachedQueue`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PollCacheSettings {
    /// How stale the cursor (and so a poll) may be.
    pub cursor_ttl: Duration,
    /// Most WAITING tokens kept, over every cache sharing one [`PollCacheBudget`] (`main`'s
    /// line and every room's).
    pub capacity: usize,
}

/// How many tokens the caches that share it hold together, so that `capacity` bounds an
/// instance's memory however many rooms it serves (one cache per line). Two caches filling
/// at the same moment may pass it by a token each.
#[derive(Debug, Clone, Default)]
pub struct PollCacheBudget(Arc<AtomicUsize>);

impl PollCacheBudget {
    /// The tokens held by every cache sharing this budget.
    #[must_use]
    pub fn held(&self) -> usize {
        self.0.load(Ordering::Relaxed)
    }

    fn change(&self, before: usize, after: usize) {
        if after > before {
            self.0.fetch_add(after - before, Ordering::Relaxed);
        } else if before > after {
            self.0.fetch_sub(before - after, Ordering::Relaxed);
        }
    }
}

impl Default for PollCacheSettings {
    fn default() -> Self {
        Self { cursor_ttl: Duration::from_millis(250), capacity: 1_000_000 }
    }
}

/// A token value as the 32 bytes of its secret (half the memory of its hex string). A cache
/// holds one line, so the room's prefix of the value says nothing more.
type Key = [u8; 32];

fn key(value: &TokenValue) -> Key {
    let hex = value.secret().as_bytes();
    let nibble = |c: u8| match c {
        b'0'..=b'9' => c - b'0',
        _ => c.wrapping_sub(b'a').wrapping_add(10),
    };
    let mut out = [0_u8; 32];
    for (i, byte) in out.iter_mut().enumerate() {
        // `TokenValue` guarantees 64 lower-case hex digits.
        let (hi, lo) = (hex.get(2 * i).copied().unwrap_or(b'0'), hex.get(2 * i + 1).copied().unwrap_or(b'0'));
        *byte = (nibble(hi) << 4) | nibble(lo);
    }
    out
}

/// What a WAITING token needs besides its value.
#[derive(Debug, Clone, Copy)]
struct Entry {
    seq: i64,
    user: UserId,
    issued_at: OffsetDateTime,
}

/// Which line a cursor describes: its epoch (a Redis that lost its line starts a new one)
/// and its draw's seed (a draw renumbers the line). Cached tokens of another line are stale.
type LineId = (u64, Option<u64>);

fn line_of(cursor: &QueueCursor) -> LineId {
    (cursor.epoch, cursor.draw.map(|d| d.seed))
}

#[derive(Debug, Default)]
struct State {
    /// The cursor and when its read started. Each admission of this instance invalidates it,
    /// so a cursor read that started before the admission is not written back.
    cursor: Stamped<QueueCursor>,
    /// The line the cached tokens belong to ([`line_of`]).
    line: LineId,
    by_key: HashMap<Key, Entry>,
    by_seq: BTreeMap<i64, Key>,
}

impl State {
    /// Takes a cursor read since `start`, unless this instance admitted meanwhile or it is
    /// older than the one held, and drops every token it admitted. A cursor of another epoch
    /// means the store lost the line the cache remembers (Redis restarted empty): every cached
    /// token is dropped, the new cursor is taken, and reads that started before it are not.
    fn set_cursor(&mut self, cursor: QueueCursor, start: ReadStart) {
        if line_of(&cursor) != self.line {
            // Only a read that started after the last change switches lines: one that started
            // before may have seen the line that was there before (the old one, late).
            if self.cursor.unchanged_since(start) {
                self.by_key.clear();
                self.by_seq.clear();
                self.line = line_of(&cursor);
                self.cursor.replace(start, cursor);
            }
            return;
        }
        if self.cursor.keep(start, cursor, |held, _| cursor.admitted_through < held.admitted_through) {
            self.drop_through(cursor.admitted_through);
        }
    }

    /// Drops the tokens with `seq <= through`: one split of the B-tree, then one hash removal
    /// per dropped token.
    fn drop_through(&mut self, through: i64) {
        if self.by_seq.first_key_value().is_some_and(|(seq, _)| *seq <= through) {
            let kept = self.by_seq.split_off(&through.saturating_add(1));
            let admitted = std::mem::replace(&mut self.by_seq, kept);
            for key in admitted.into_values() {
                self.by_key.remove(&key);
            }
        }
    }

    fn remember(&mut self, token: &QueueToken, capacity: usize, budget: &PollCacheBudget) {
        let key = key(&token.value);
        if token.status != TokenStatus::Waiting {
            if let Some(old) = self.by_key.remove(&key) {
                self.by_seq.remove(&old.seq);
            }
            return;
        }
        if budget.held() >= capacity && !self.by_key.contains_key(&key) {
            return;
        }
        let entry = Entry { seq: token.seq, user: token.user_id, issued_at: token.issued_at };
        if let Some(old) = self.by_key.insert(key, entry) {
            self.by_seq.remove(&old.seq);
        }
        self.by_seq.insert(token.seq, key);
    }

    fn lookup(&self, value: &TokenValue, cursor: &QueueCursor) -> Option<QueueToken> {
        let e = self.by_key.get(&key(value))?;
        (e.seq > cursor.admitted_through).then(|| QueueToken::new_waiting(value.clone(), e.user, e.seq, e.issued_at))
    }
}

/// A [`QueueStore`] that answers polls of WAITING tokens from memory (see the module docs).
pub struct CachedQueue {
    inner: Arc<dyn QueueStore>,
    ticker: Arc<dyn Ticker>,
    settings: PollCacheSettings,
    state: RwLock<State>,
    /// When the one refresh of a stale cursor under way started (see [`CachedQueue::claim`]).
    refreshing: Mutex<Option<Instant>>,
    /// The tokens this cache and the others of the instance hold together.
    budget: PollCacheBudget,
}

impl std::fmt::Debug for CachedQueue {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CachedQueue")
            .field("settings", &self.settings)
            .field("cached", &self.len())
            .finish_non_exhaustive()
    }
}

impl CachedQueue {
    /// Wraps `inner`; `ticker` measures how old the cached cursor is. The cache has a budget of
    /// its own.
    #[must_use]
    pub fn new(inner: Arc<dyn QueueStore>, ticker: Arc<dyn Ticker>, settings: PollCacheSettings) -> Self {
        Self::sharing(inner, ticker, settings, PollCacheBudget::default())
    }

    /// Wraps `inner`, counting its tokens against `budget` with the other caches that share it.
    #[must_use]
    pub fn sharing(
        inner: Arc<dyn QueueStore>,
        ticker: Arc<dyn Ticker>,
        settings: PollCacheSettings,
        budget: PollCacheBudget,
    ) -> Self {
        Self { inner, ticker, settings, state: RwLock::new(State::default()), refreshing: Mutex::new(None), budget }
    }

    /// How many WAITING tokens are cached.
    #[must_use]
    pub fn len(&self) -> usize {
        self.read().by_key.len()
    }

    /// Whether nothing is cached.
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    // A panic while holding the lock leaves the maps consistent (each change is a few map
    // operations), so a poisoned lock is used as it is.
    fn read(&self) -> RwLockReadGuard<'_, State> {
        self.state.read().unwrap_or_else(PoisonError::into_inner)
    }

    fn write(&self) -> RwLockWriteGuard<'_, State> {
        self.state.write().unwrap_or_else(PoisonError::into_inner)
    }

    /// Stamps a store call that is about to start (see [`CachedQueue::write_back`]).
    pub(crate) fn begin(&self) -> ReadStart {
        let now = self.ticker.now();
        self.read().cursor.start(now)
    }

    /// Keeps what a store call stamped by `start` returned: its cursor, unless this instance
    /// admitted meanwhile (or a newer one is held), and `token` if it is still in line.
    pub(crate) fn write_back(&self, start: ReadStart, cursor: QueueCursor, token: Option<&QueueToken>) {
        let mut state = self.write();
        let before = state.by_key.len();
        state.set_cursor(cursor, start);
        // A token of a line the cache no longer follows is not kept.
        if let Some(token) = token.filter(|t| t.seq > cursor.admitted_through && line_of(&cursor) == state.line) {
            state.remember(token, self.settings.capacity, &self.budget);
        }
        self.budget.change(before, state.by_key.len());
    }

    /// Reads the cursor from the store now, whatever the copy's age, and keeps it unless this
    /// instance admitted meanwhile; ends the refresh under way, whatever the outcome. Besides
    /// the poll that claimed a stale copy, `app`'s keeper calls it ahead of the copy's expiry,
    /// so a crowd of polls seldom meets a stale cursor and none of them waits for the store.
    ///
    /// # Errors
    /// The store's, when it fails; the copy is left as it was.
    pub fn refresh(&self) -> Result<QueueCursor, StoreError> {
        let start = self.begin();
        let read = self.inner.cursor();
        if let Ok(cursor) = read {
            self.write_back(start, cursor, None);
        }
        *self.refreshing.lock().unwrap_or_else(PoisonError::into_inner) = None;
        read
    }

    /// Ends the refresh under way, if any: a store read made elsewhere (the non-blocking path,
    /// [`crate::async_lines`]) brought a cursor and wrote it back.
    pub(crate) fn refreshed(&self) {
        *self.refreshing.lock().unwrap_or_else(PoisonError::into_inner) = None;
    }

    /// How long after its `cursor_ttl` a copy still answers while one caller refreshes it.
    fn grace(&self) -> Duration {
        self.settings.cursor_ttl
    }

    /// Claims the refresh of a stale cursor for a poll answered from memory: `true` for the
    /// one caller that should go to the store (and refresh it there), `false` while another
    /// refresh, claimed less than [`CachedQueue::grace`] ago, is under way (the caller answers
    /// from the stale copy meanwhile). So when the copy goes stale under a crowd of polls, one
    /// of them goes to the store, not all of them: the others would each hop to a blocking
    /// thread and queue for the store's slots behind issues and payments.
    fn claim(&self, now: Instant) -> bool {
        let mut refreshing = self.refreshing.lock().unwrap_or_else(PoisonError::into_inner);
        match *refreshing {
            Some(since) if now.saturating_duration_since(since) < self.grace() => false,
            _ => {
                *refreshing = Some(now);
                true
            }
        }
    }

    /// The fresh copy, or the store's cursor, read now (the path of a caller that may block).
    fn cursor_now(&self) -> Result<QueueCursor, StoreError> {
        // Bound first: the read guard must be gone before a refresh takes the write lock.
        let fresh = self.read().cursor.fresh(self.ticker.now(), self.settings.cursor_ttl);
        fresh.map_or_else(|| self.refresh(), Ok)
    }

    /// A cached WAITING token with the fresh copy of the cursor.
    pub(crate) fn find_fresh(&self, value: &TokenValue) -> Option<(QueueToken, QueueCursor)> {
        let state = self.read();
        let cursor = state.cursor.fresh(self.ticker.now(), self.settings.cursor_ttl)?;
        state.lookup(value, &cursor).map(|t| (t, cursor))
    }
}

impl QueueStore for CachedQueue {
    fn issue(&self, user: UserId, value: TokenValue, now: OffsetDateTime) -> Result<IssueOutcome, StoreError> {
        let start = self.begin();
        let outcome = self.inner.issue(user, value, now)?;
        self.write_back(start, outcome.cursor, Some(&outcome.token));
        Ok(outcome)
    }

    /// Always the store's answer: it decides access to protected calls.
    fn find(&self, value: &TokenValue) -> Result<Option<QueueToken>, StoreError> {
        self.inner.find(value)
    }

    /// The caller may block: a fresh answer from memory, or the store's (never the stale copy:
    /// this is also the path of the caller that claimed the refresh).
    fn find_with_cursor(&self, value: &TokenValue) -> Result<Option<(QueueToken, QueueCursor)>, StoreError> {
        if let Some(hit) = self.find_fresh(value) {
            return Ok(Some(hit));
        }
        let cursor = self.cursor_now()?;
        let cached = self.read().lookup(value, &cursor);
        if let Some(token) = cached {
            return Ok(Some((token, cursor)));
        }
        let start = self.begin();
        let found = self.inner.find_with_cursor(value)?;
        if let Some((token, cursor)) = &found {
            self.write_back(start, *cursor, Some(token));
        }
        Ok(found)
    }

    /// A cached WAITING token with the cached cursor. Once the cursor is stale, one caller
    /// gets `None` and refreshes it through the store; the others are answered from the stale
    /// copy until that refresh lands (see [`CachedQueue::claim`]).
    fn find_in_memory(&self, value: &TokenValue) -> Option<(QueueToken, QueueCursor)> {
        let now = self.ticker.now();
        let (answer, fresh) = {
            let state = self.read();
            let ttl = self.settings.cursor_ttl;
            match state.cursor.fresh(now, ttl) {
                Some(cursor) => (state.lookup(value, &cursor).map(|t| (t, cursor)), true),
                None => {
                    let cursor = state.cursor.fresh(now, ttl + self.grace())?;
                    (state.lookup(value, &cursor).map(|t| (t, cursor)), false)
                }
            }
        };
        let answer = answer?;
        (fresh || !self.claim(now)).then_some(answer)
    }

    fn cursor(&self) -> Result<QueueCursor, StoreError> {
        self.cursor_now()
    }

    fn admit(&self, policy: &AdmissionPolicy) -> Result<AdmissionOutcome, StoreError> {
        let outcome = self.inner.admit(policy)?;
        if outcome.admitted() > 0 || outcome.abandoned() > 0 {
            // Our own admission: stop serving the tokens it let in at once, and refuse any
            // cursor read that started before it.
            self.write().cursor.invalidate();
        }
        Ok(outcome)
    }

    fn expire_tokens(&self, limit: u32) -> Result<u64, StoreError> {
        self.inner.expire_tokens(limit)
    }

    fn draw(&self, opens_at: OffsetDateTime, seed: u64) -> Result<DrawOutcome, StoreError> {
        let outcome = self.inner.draw(opens_at, seed)?;
        if matches!(outcome, DrawOutcome::Drawn { fresh: true, .. }) {
            // Our own draw renumbered the line: no cursor read from before it is kept.
            self.write().cursor.invalidate();
        }
        Ok(outcome)
    }

    fn note_seen(&self, values: &[TokenValue], at: OffsetDateTime) -> Result<(), StoreError> {
        self.inner.note_seen(values, at)
    }

    fn use_up(&self, value: &TokenValue, at: OffsetDateTime) -> Result<(), StoreError> {
        self.inner.use_up(value, at)
    }

    fn stats(&self) -> Result<QueueStats, StoreError> {
        self.inner.stats()
    }

    fn ping(&self) -> Result<(), StoreError> {
        self.inner.ping()
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, reason = "test code")]

    use std::sync::Mutex;

    use domain::ports::MockQueueStore;
    use domain::random::{Randomness as _, SeededRandom};
    use mockall::predicate::eq;

    use super::*;
    use crate::ticker::ManualTicker;

    fn at() -> OffsetDateTime {
        OffsetDateTime::from_unix_timestamp(1_893_456_000).unwrap()
    }

    fn token(seq: i64) -> QueueToken {
        let random = SeededRandom::new(u64::try_from(seq).unwrap());
        QueueToken::new_waiting(random.token(), UserId::from_uuid(random.uuid()), seq, at())
    }

    fn cursor(admitted_through: i64) -> QueueCursor {
        QueueCursor { admitted_through, last_admission_at: None, epoch: 0, draw: None }
    }

    fn cache(inner: MockQueueStore, ticker: &ManualTicker, capacity: usize) -> CachedQueue {
        let settings = PollCacheSettings { cursor_ttl: Duration::from_millis(250), capacity };
        CachedQueue::new(Arc::new(inner), Arc::new(ticker.clone()), settings)
    }

    fn issued(t: &QueueToken, c: QueueCursor) -> IssueOutcome {
        IssueOutcome { token: t.clone(), created: true, cursor: c }
    }

    #[test]
    fn repeated_polls_of_a_waiting_token_hit_the_store_once_and_then_need_no_io() {
        let ticker = ManualTicker::new();
        let t = token(10);
        let mut inner = MockQueueStore::new();
        inner.expect_cursor().times(1).returning(|| Ok(cursor(3)));
        let found = t.clone();
        inner.expect_find_with_cursor().times(1).returning(move |_| Ok(Some((found.clone(), cursor(3)))));
        let q = cache(inner, &ticker, 10);
        assert_eq!(q.find_in_memory(&t.value), None, "nothing cached yet");
        for _ in 0..5 {
            assert_eq!(q.find_with_cursor(&t.value).unwrap(), Some((t.clone(), cursor(3))));
        }
        assert_eq!(q.find_in_memory(&t.value), Some((t.clone(), cursor(3))));
        assert_eq!(q.len(), 1);
    }

    #[test]
    fn the_cursor_is_reread_after_its_ttl_on_the_monotonic_clock() {
        let ticker = ManualTicker::new();
        let t = token(10);
        let mut inner = MockQueueStore::new();
        let cursors = Mutex::new(vec![cursor(3), cursor(10)].into_iter());
        inner.expect_cursor().times(2).returning(move || Ok(cursors.lock().unwrap().next().unwrap()));
        let mut active = t.clone();
        active.status = TokenStatus::Active;
        let answers = Mutex::new(vec![(t.clone(), cursor(3)), (active.clone(), cursor(10))].into_iter());
        inner.expect_find_with_cursor().times(2).returning(move |_| Ok(answers.lock().unwrap().next()));
        let q = cache(inner, &ticker, 10);

        assert_eq!(q.find_with_cursor(&t.value).unwrap().unwrap().0.status, TokenStatus::Waiting);
        ticker.advance(Duration::from_millis(249));
        assert!(q.find_in_memory(&t.value).is_some(), "cursor still fresh");
        ticker.advance(Duration::from_millis(1));
        assert_eq!(q.find_in_memory(&t.value), None, "stale cursor: not answered from memory");
        // The re-read cursor has passed the token: the store says it was admitted.
        assert_eq!(q.find_with_cursor(&t.value).unwrap(), Some((active, cursor(10))));
        assert!(q.is_empty(), "an admitted token is dropped");
    }

    /// Issue 22: when the cursor goes stale under a crowd of polls, one poll goes to the store
    /// and refreshes it; the others are answered from the stale copy meanwhile, instead of all
    /// hopping to the store at once. A claim that is not followed by a refresh lapses after the
    /// grace, and a copy older than ttl + grace is never served.
    #[test]
    fn a_stale_cursor_sends_one_poll_to_the_store_and_answers_the_others_from_memory() {
        let ticker = ManualTicker::new();
        let t = token(10);
        let mut inner = MockQueueStore::new();
        let out = issued(&t, cursor(3));
        inner.expect_issue().times(1).returning(move |_, _, _| Ok(out.clone()));
        inner.expect_find_with_cursor().never();
        inner.expect_cursor().times(1).returning(|| Ok(cursor(4)));
        let q = cache(inner, &ticker, 10);
        q.issue(t.user_id, t.value.clone(), at()).unwrap();

        ticker.advance(Duration::from_millis(250));
        assert_eq!(q.find_in_memory(&t.value), None, "the first poll after the ttl refreshes");
        for _ in 0..20 {
            assert_eq!(q.find_in_memory(&t.value), Some((t.clone(), cursor(3))), "the crowd: the stale copy");
        }
        // The claimant's own path reads the store (never the stale copy) and ends the claim.
        assert_eq!(q.find_with_cursor(&t.value).unwrap(), Some((t.clone(), cursor(4))));
        assert_eq!(q.find_in_memory(&t.value), Some((t.clone(), cursor(4))), "fresh again");

        // A claim that is never followed up lapses after the grace; a copy past ttl + grace is
        // not served.
        ticker.advance(Duration::from_millis(250));
        assert_eq!(q.find_in_memory(&t.value), None);
        assert!(q.find_in_memory(&t.value).is_some());
        ticker.advance(Duration::from_millis(249));
        assert!(q.find_in_memory(&t.value).is_some(), "within ttl + grace");
        ticker.advance(Duration::from_millis(1));
        assert_eq!(q.find_in_memory(&t.value), None, "the copy is too old to serve");
    }

    #[test]
    fn authorization_lookups_always_go_to_the_store() {
        let ticker = ManualTicker::new();
        let t = token(10);
        let mut inner = MockQueueStore::new();
        let found = t.clone();
        inner.expect_find().with(eq(t.value.clone())).times(3).returning(move |_| Ok(Some(found.clone())));
        let q = cache(inner, &ticker, 10);
        for _ in 0..3 {
            assert_eq!(q.find(&t.value).unwrap(), Some(t.clone()));
        }
    }

    #[test]
    fn issued_tokens_are_answered_from_memory_at_once() {
        let ticker = ManualTicker::new();
        let t = token(5);
        let mut inner = MockQueueStore::new();
        let out = issued(&t, cursor(2));
        inner.expect_issue().times(1).returning(move |_, _, _| Ok(out.clone()));
        let q = cache(inner, &ticker, 10);
        q.issue(t.user_id, t.value.clone(), at()).unwrap();
        assert_eq!(q.find_in_memory(&t.value), Some((t, cursor(2))));
    }

    #[test]
    fn an_admission_drops_the_cursor_and_the_admitted_range() {
        let ticker = ManualTicker::new();
        let tokens: Vec<QueueToken> = (1..=6).map(token).collect();
        let mut inner = MockQueueStore::new();
        let outs = Mutex::new(tokens.iter().map(|t| issued(t, cursor(0))).collect::<Vec<_>>().into_iter());
        inner.expect_issue().times(6).returning(move |_, _, _| Ok(outs.lock().unwrap().next().unwrap()));
        inner.expect_admit().times(1).returning(|_| Ok(AdmissionOutcome::Admitted(4)));
        inner.expect_cursor().times(1).returning(|| Ok(cursor(4)));
        let q = cache(inner, &ticker, 10);
        for t in &tokens {
            q.issue(t.user_id, t.value.clone(), at()).unwrap();
        }
        assert_eq!(q.len(), 6);
        q.admit(&AdmissionPolicy::default()).unwrap();
        assert_eq!(q.find_in_memory(&tokens[5].value), None, "no cursor after our own admission");
        assert_eq!(q.cursor().unwrap(), cursor(4));
        assert_eq!(q.len(), 2, "tokens 1-4 dropped in one step");
        assert_eq!(q.find_in_memory(&tokens[4].value).map(|(t, _)| t.seq), Some(5));
        assert_eq!(q.find_in_memory(&tokens[0].value), None);
    }

    #[test]
    fn a_cursor_read_that_started_before_our_admission_is_not_written_back() {
        let ticker = ManualTicker::new();
        let t = token(3);
        let q = Arc::new(Mutex::new(None::<Arc<CachedQueue>>));
        let mut inner = MockQueueStore::new();
        let out = issued(&t, cursor(0));
        inner.expect_issue().times(1).returning(move |_, _, _| Ok(out.clone()));
        inner.expect_admit().times(1).returning(|_| Ok(AdmissionOutcome::Admitted(5)));
        // The slow read: while it is in flight, this instance admits.
        let during = q.clone();
        inner.expect_cursor().times(1).returning(move || {
            let cache = during.lock().unwrap().clone().unwrap();
            cache.admit(&AdmissionPolicy::default()).unwrap();
            Ok(cursor(0))
        });
        let cache_q = Arc::new(cache(inner, &ticker, 10));
        *q.lock().unwrap() = Some(cache_q.clone());
        cache_q.issue(t.user_id, t.value.clone(), at()).unwrap();
        ticker.advance(Duration::from_millis(300));
        assert_eq!(cache_q.cursor().unwrap(), cursor(0), "the caller gets what it read");
        assert_eq!(cache_q.find_in_memory(&t.value), None, "but the pre-admission cursor is not kept");
    }

    fn in_epoch(admitted_through: i64, epoch: u64) -> QueueCursor {
        QueueCursor { epoch, ..cursor(admitted_through) }
    }

    /// Issue 21: Redis lost its data and started a new line. The tokens of the old line are
    /// not answered from memory once the next cursor read (within one `cursor_ttl`) shows the
    /// new epoch, even though the new line's cursor is behind the old one's.
    #[test]
    fn a_cursor_of_a_new_line_drops_every_token_of_the_old_one() {
        let ticker = ManualTicker::new();
        let (old, new) = (token(4), token(1));
        let mut inner = MockQueueStore::new();
        let out = issued(&old, in_epoch(2, 7));
        inner.expect_issue().times(1).returning(move |_, _, _| Ok(out.clone()));
        inner.expect_cursor().times(1).returning(|| Ok(in_epoch(0, 9)));
        inner.expect_find_with_cursor().times(1).returning(|_| Ok(None));
        let q = cache(inner, &ticker, 10);
        q.issue(old.user_id, old.value.clone(), at()).unwrap();
        assert_eq!(q.find_in_memory(&old.value).map(|(t, _)| t.seq), Some(4));

        ticker.advance(Duration::from_millis(250));
        assert_eq!(q.find_with_cursor(&old.value).unwrap(), None, "the store's answer: unknown");
        assert!(q.is_empty());
        assert_eq!(q.cursor().unwrap(), in_epoch(0, 9), "the new line's cursor is kept though it is behind");
        assert_eq!(q.find_in_memory(&new.value), None);
    }

    #[test]
    fn a_late_read_of_the_old_line_neither_switches_back_nor_is_kept() {
        let ticker = ManualTicker::new();
        let (cached, polled) = (token(4), token(5));
        let q = Arc::new(Mutex::new(None::<Arc<CachedQueue>>));
        let mut inner = MockQueueStore::new();
        let out = issued(&cached, in_epoch(2, 7));
        inner.expect_issue().times(1).returning(move |_, _, _| Ok(out.clone()));
        // A slow read that saw the old line: while it is in flight the cursor goes stale and a
        // refresh sees the new line.
        let (during, clock, late) = (q.clone(), ticker.clone(), polled.clone());
        inner.expect_find_with_cursor().times(1).returning(move |_| {
            clock.advance(Duration::from_millis(250));
            let cache = during.lock().unwrap().clone().unwrap();
            assert_eq!(cache.cursor().unwrap(), in_epoch(0, 9));
            Ok(Some((late.clone(), in_epoch(2, 7))))
        });
        inner.expect_cursor().times(1).returning(|| Ok(in_epoch(0, 9)));
        let cache_q = Arc::new(cache(inner, &ticker, 10));
        *q.lock().unwrap() = Some(cache_q.clone());
        cache_q.issue(cached.user_id, cached.value.clone(), at()).unwrap();
        let _ = cache_q.find_with_cursor(&polled.value).unwrap();
        assert!(cache_q.is_empty(), "neither token of the old line is kept");
        assert_eq!(cache_q.cursor().unwrap(), in_epoch(0, 9), "still on the new line");
    }

    #[test]
    fn the_cache_stops_growing_at_capacity_without_scanning() {
        let ticker = ManualTicker::new();
        let tokens: Vec<QueueToken> = (1..=3).map(token).collect();
        let mut inner = MockQueueStore::new();
        let outs = Mutex::new(tokens.iter().map(|t| issued(t, cursor(0))).collect::<Vec<_>>().into_iter());
        inner.expect_issue().times(3).returning(move |_, _, _| Ok(outs.lock().unwrap().next().unwrap()));
        let q = cache(inner, &ticker, 2);
        for t in &tokens {
            q.issue(t.user_id, t.value.clone(), at()).unwrap();
        }
        assert_eq!(q.len(), 2);
        assert_eq!(q.find_in_memory(&tokens[2].value), None, "the third is served by the store");
    }

    #[test]
    fn caches_sharing_a_budget_hold_at_most_its_capacity_together() {
        let ticker = ManualTicker::new();
        let settings = PollCacheSettings { cursor_ttl: Duration::from_millis(250), capacity: 2 };
        let budget = PollCacheBudget::default();
        let tokens: Vec<QueueToken> = (1..=3).map(token).collect();
        let line = |tokens: Vec<QueueToken>| {
            let mut inner = MockQueueStore::new();
            let n = tokens.len();
            let outs = Mutex::new(tokens.into_iter().map(|t| issued(&t, cursor(0))).collect::<Vec<_>>().into_iter());
            inner.expect_issue().times(n).returning(move |_, _, _| Ok(outs.lock().unwrap().next().unwrap()));
            CachedQueue::sharing(Arc::new(inner), Arc::new(ticker.clone()), settings, budget.clone())
        };
        let (a, b) = (line(tokens[..2].to_vec()), line(tokens[2..].to_vec()));
        for t in &tokens[..2] {
            a.issue(t.user_id, t.value.clone(), at()).unwrap();
        }
        b.issue(tokens[2].user_id, tokens[2].value.clone(), at()).unwrap();
        assert_eq!((a.len(), b.len(), budget.held()), (2, 0, 2), "the second line finds the budget spent");
        // An admission in the first line gives its room back.
        a.write_back(a.begin(), cursor(2), None);
        assert_eq!((a.len(), budget.held()), (0, 0));
    }

    #[test]
    fn store_failures_pass_through() {
        let ticker = ManualTicker::new();
        let mut inner = MockQueueStore::new();
        inner.expect_cursor().returning(|| Err(StoreError::Unavailable("down".into())));
        let q = cache(inner, &ticker, 2);
        assert_eq!(q.find_with_cursor(&token(1).value), Err(StoreError::Unavailable("down".into())));
    }

    #[test]
    fn a_room_token_is_keyed_by_its_whole_secret() {
        let room = domain::room::RoomId::parse("tour").unwrap();
        let a = TokenValue::parse(&"0123456789abcdef".repeat(4)).unwrap().in_room(&room);
        let b = TokenValue::parse(&format!("{}0", &"0123456789abcdef".repeat(4)[..63])).unwrap().in_room(&room);
        assert_ne!(key(&a), key(&b), "the last digits of the secret count");
        assert_eq!(TokenValue::from_bytes(key(&a)).in_room(&room), a);
    }

    #[test]
    fn keys_round_trip_every_hex_digit() {
        let v = TokenValue::parse(&"0123456789abcdef".repeat(4)).unwrap();
        let k = key(&v);
        assert_eq!(k[0], 0x01);
        assert_eq!(k[7], 0xef);
        assert_eq!(TokenValue::from_bytes(k), v);
    }
}
