//! The poll caches in front of the front door's non-blocking queue calls
//! ([`AsyncQueueLines`]): [`CachedAsyncLines`] wraps the store's async client and the very
//! [`CachedQueue`]s the blocking path goes through (`main`'s and every room's), so both paths
//! fill and read one copy per line.
//!
//! - `issue` goes to the store, and the token it returns (new or the user's existing one) is
//!   kept with the cursor read with it: a token just issued is answered from memory at once, as
//!   on the blocking path ([`crate::poll_cache`]).
//! - `find_with_cursor` answers a cached WAITING token with a fresh cursor from memory;
//!   otherwise it reads the store and keeps what it read (the cursor and the token if still in
//!   line), which also ends the refresh a stale copy's poll claimed.
//!
//! The race guard is the blocking path's: a call is stamped (`begin`) before its future first
//! sends anything, and what it read is written back only if this instance did not admit or draw
//! since (`write_back`), so a cursor read before our own admission never replaces it.

use std::sync::Arc;

use domain::call::CommitWatch;
use domain::ids::UserId;
use domain::ports::{AsyncQueueLines, IssueOutcome, StoreFuture};
use domain::queue::{QueueCursor, QueueToken, TokenValue};
use domain::room::RoomId;
use time::OffsetDateTime;

use crate::poll_cache::CachedQueue;
use crate::rooms_cache::CachedLines;

/// [`AsyncQueueLines`] through the poll caches of the blocking path (see the module docs).
#[derive(Debug, Clone)]
pub struct CachedAsyncLines {
    inner: Arc<dyn AsyncQueueLines>,
    main: Arc<CachedQueue>,
    rooms: Arc<CachedLines>,
}

impl CachedAsyncLines {
    /// Wraps `inner` with `main`'s cache and the rooms' caches: the same instances the
    /// blocking path's `Ports::queue` and `Ports::lines` are.
    #[must_use]
    pub fn new(inner: Arc<dyn AsyncQueueLines>, main: Arc<CachedQueue>, rooms: Arc<CachedLines>) -> Self {
        Self { inner, main, rooms }
    }

    fn cache(&self, room: &RoomId) -> Arc<CachedQueue> {
        if room.is_main() {
            self.main.clone()
        } else {
            self.rooms.cache(room)
        }
    }
}

impl AsyncQueueLines for CachedAsyncLines {
    fn issue<'a>(
        &'a self,
        room: &'a RoomId,
        user: UserId,
        value: TokenValue,
        now: OffsetDateTime,
        watch: &'a CommitWatch,
    ) -> StoreFuture<'a, IssueOutcome> {
        Box::pin(async move {
            let cache = self.cache(room);
            let start = cache.begin();
            let outcome = self.inner.issue(room, user, value, now, watch).await?;
            cache.write_back(start, outcome.cursor, Some(&outcome.token));
            Ok(outcome)
        })
    }

    fn find_with_cursor<'a>(
        &'a self,
        room: &'a RoomId,
        value: &'a TokenValue,
    ) -> StoreFuture<'a, Option<(QueueToken, QueueCursor)>> {
        Box::pin(async move {
            let cache = self.cache(room);
            if let Some(hit) = cache.find_fresh(value) {
                return Ok(Some(hit));
            }
            let start = cache.begin();
            let found = self.inner.find_with_cursor(room, value).await;
            if let Ok(Some((token, cursor))) = &found {
                cache.write_back(start, *cursor, Some(token));
            }
            cache.refreshed();
            found
        })
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, reason = "tests")]

    use std::future::Future;
    use std::pin::pin;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::Mutex;
    use std::task::{Context, Poll, Waker};
    use std::time::Duration;

    use domain::error::StoreError;
    use domain::ports::{MockQueueStore, QueueLines, QueueStore};
    use domain::queue::{AdmissionOutcome, AdmissionPolicy};

    use super::*;
    use crate::poll_cache::{PollCacheBudget, PollCacheSettings};
    use crate::ticker::ManualTicker;

    /// Polls a future that never waits (the fake store answers at once).
    fn ready<T>(f: impl Future<Output = T>) -> T {
        let mut f = pin!(f);
        match f.as_mut().poll(&mut Context::from_waker(Waker::noop())) {
            Poll::Ready(v) => v,
            Poll::Pending => panic!("the fake store never waits"),
        }
    }

    fn at() -> OffsetDateTime {
        OffsetDateTime::from_unix_timestamp(1_893_456_000).unwrap()
    }

    fn token(seq: i64, room: &RoomId) -> QueueToken {
        let mut bytes = [0_u8; 32];
        bytes[..8].copy_from_slice(&seq.to_be_bytes());
        let value = TokenValue::from_bytes(bytes);
        let value = if room.is_main() { value } else { value.in_room(room) };
        QueueToken::new_waiting(value, UserId::from_uuid(uuid::Uuid::from_u128(seq.unsigned_abs().into())), seq, at())
    }

    fn cursor(admitted: i64) -> QueueCursor {
        QueueCursor { admitted_through: admitted, ..QueueCursor::default() }
    }

    /// The async store: answers what it is told, counting calls.
    #[derive(Debug, Default)]
    struct Fake {
        issued: Mutex<Vec<IssueOutcome>>,
        found: Mutex<Vec<Option<(QueueToken, QueueCursor)>>>,
        calls: AtomicUsize,
    }

    impl AsyncQueueLines for Fake {
        fn issue<'a>(
            &'a self,
            _room: &'a RoomId,
            _user: UserId,
            _value: TokenValue,
            _now: OffsetDateTime,
            watch: &'a CommitWatch,
        ) -> StoreFuture<'a, IssueOutcome> {
            self.calls.fetch_add(1, Ordering::SeqCst);
            let out = if watch.begin_commit() {
                self.issued.lock().unwrap().pop().ok_or_else(|| StoreError::Internal("no outcome".into()))
            } else {
                Err(StoreError::Timeout("gave up".into()))
            };
            Box::pin(std::future::ready(out))
        }

        fn find_with_cursor<'a>(
            &'a self,
            _room: &'a RoomId,
            _value: &'a TokenValue,
        ) -> StoreFuture<'a, Option<(QueueToken, QueueCursor)>> {
            self.calls.fetch_add(1, Ordering::SeqCst);
            let out = self.found.lock().unwrap().pop().ok_or_else(|| StoreError::Internal("no answer".into()));
            Box::pin(std::future::ready(out))
        }
    }

    /// Rooms' blocking lines that must not be called: their stores have no expectations.
    struct NoLines;

    impl QueueLines for NoLines {
        fn line(&self, _room: &RoomId) -> Arc<dyn QueueStore> {
            Arc::new(MockQueueStore::new())
        }
    }

    struct Setup {
        fake: Arc<Fake>,
        main: Arc<CachedQueue>,
        rooms: Arc<CachedLines>,
        lines: CachedAsyncLines,
    }

    fn setup(main_store: MockQueueStore, ticker: &ManualTicker) -> Setup {
        let fake = Arc::new(Fake::default());
        let settings = PollCacheSettings { cursor_ttl: Duration::from_millis(250), capacity: 10 };
        let budget = PollCacheBudget::default();
        let main =
            Arc::new(CachedQueue::sharing(Arc::new(main_store), Arc::new(ticker.clone()), settings, budget.clone()));
        let rooms = Arc::new(CachedLines::new(Arc::new(NoLines), Arc::new(ticker.clone()), settings, budget));
        let lines = CachedAsyncLines::new(fake.clone(), main.clone(), rooms.clone());
        Setup { fake, main, rooms, lines }
    }

    #[test]
    fn a_token_issued_without_blocking_is_answered_from_memory_at_once_on_both_paths() {
        let ticker = ManualTicker::new();
        let s = setup(MockQueueStore::new(), &ticker);
        let main = RoomId::main();
        let t = token(5, &main);
        s.fake.issued.lock().unwrap().push(IssueOutcome { token: t.clone(), created: true, cursor: cursor(2) });
        let watch = CommitWatch::new();
        ready(s.lines.issue(&main, t.user_id, t.value.clone(), at(), &watch)).unwrap();
        // The blocking path's poll from memory, and the non-blocking path's, need no store.
        assert_eq!(s.main.find_in_memory(&t.value), Some((t.clone(), cursor(2))));
        assert_eq!(ready(s.lines.find_with_cursor(&main, &t.value)).unwrap(), Some((t, cursor(2))));
        assert_eq!(s.fake.calls.load(Ordering::SeqCst), 1, "only the issue went to the store");
    }

    #[test]
    fn a_room_token_is_kept_in_that_rooms_cache() {
        let ticker = ManualTicker::new();
        let s = setup(MockQueueStore::new(), &ticker);
        let room = RoomId::parse("tour").unwrap();
        let t = token(3, &room);
        s.fake.found.lock().unwrap().push(Some((t.clone(), cursor(1))));
        assert_eq!(ready(s.lines.find_with_cursor(&room, &t.value)).unwrap(), Some((t.clone(), cursor(1))));
        assert_eq!(s.rooms.cache(&room).find_in_memory(&t.value), Some((t.clone(), cursor(1))));
        assert_eq!(s.main.find_in_memory(&t.value), None, "not main's");
    }

    #[test]
    fn a_read_that_started_before_our_own_admission_is_not_written_back() {
        let ticker = ManualTicker::new();
        let mut store = MockQueueStore::new();
        store.expect_admit().returning(|_| Ok(AdmissionOutcome::Admitted(4)));
        let s = setup(store, &ticker);
        let main = RoomId::main();
        let t = token(5, &main);
        // A read whose reply (cursor 2) lands after this instance admitted through 4.
        let found = Some((t.clone(), cursor(2)));
        let slow = SlowOnce { found: Mutex::new(Some(found)), polled: AtomicUsize::new(0) };
        let lines = CachedAsyncLines::new(Arc::new(slow), s.main.clone(), s.rooms.clone());
        let mut read = pin!(lines.find_with_cursor(&main, &t.value));
        let mut cx = Context::from_waker(Waker::noop());
        assert!(read.as_mut().poll(&mut cx).is_pending(), "stamped and sent");
        s.main.admit(&AdmissionPolicy::default()).unwrap();
        assert!(read.as_mut().poll(&mut cx).is_ready());
        assert_eq!(s.main.find_in_memory(&t.value), None, "the late cursor was refused");
    }

    #[test]
    fn an_issue_for_a_caller_that_gave_up_stores_nothing_and_caches_nothing() {
        let ticker = ManualTicker::new();
        let s = setup(MockQueueStore::new(), &ticker);
        let main = RoomId::main();
        let t = token(5, &main);
        s.fake.issued.lock().unwrap().push(IssueOutcome { token: t.clone(), created: true, cursor: cursor(2) });
        let watch = CommitWatch::new();
        assert!(watch.abandon());
        let out = ready(s.lines.issue(&main, t.user_id, t.value.clone(), at(), &watch));
        assert!(matches!(out, Err(StoreError::Timeout(_))));
        assert_eq!(s.main.find_in_memory(&t.value), None);
        assert_eq!(s.fake.issued.lock().unwrap().len(), 1, "the store was never asked to write");
    }

    /// Answers its one read on the second poll.
    #[derive(Debug)]
    struct SlowOnce {
        found: Mutex<Option<Option<(QueueToken, QueueCursor)>>>,
        polled: AtomicUsize,
    }

    impl AsyncQueueLines for SlowOnce {
        fn issue<'a>(
            &'a self,
            _room: &'a RoomId,
            _user: UserId,
            _value: TokenValue,
            _now: OffsetDateTime,
            _watch: &'a CommitWatch,
        ) -> StoreFuture<'a, IssueOutcome> {
            Box::pin(std::future::ready(Err(StoreError::Internal("not used".into()))))
        }

        fn find_with_cursor<'a>(
            &'a self,
            _room: &'a RoomId,
            _value: &'a TokenValue,
        ) -> StoreFuture<'a, Option<(QueueToken, QueueCursor)>> {
            Box::pin(std::future::poll_fn(move |_| {
                if self.polled.fetch_add(1, Ordering::SeqCst) == 0 {
                    return Poll::Pending;
                }
                let found = self.found.lock().unwrap().take().flatten();
                Poll::Ready(Ok(found))
            }))
        }
    }

    #[test]
    fn a_returning_users_token_from_issue_is_kept_in_that_rooms_cache() {
        let ticker = ManualTicker::new();
        let s = setup(MockQueueStore::new(), &ticker);
        let room = RoomId::parse("tour").unwrap();
        let t = token(9, &room);
        s.fake.issued.lock().unwrap().push(IssueOutcome { token: t.clone(), created: false, cursor: cursor(0) });
        let watch = CommitWatch::new();
        let out = ready(s.lines.issue(&room, t.user_id, t.value.clone(), at(), &watch)).unwrap();
        assert!(!out.created);
        assert_eq!(s.rooms.cache(&room).find_in_memory(&t.value), Some((t, cursor(0))));
    }
}
