//! Steps 1 and 2 without blocking (`service::front`): the same answers as the blocking use
//! cases, from the same rules, and `None` whenever the caller must block instead.

use std::future::Future;
use std::pin::pin;
use std::task::{Context, Poll, Waker};

use super::*;
use crate::call::CommitWatch;
use crate::ports::{AsyncQueueLines, QueueStore, StoreFuture};
use crate::room::RoomId;

/// Polls a future of the fake below, which never waits.
fn ready<T>(f: impl Future<Output = T>) -> T {
    match pin!(f).poll(&mut Context::from_waker(Waker::noop())) {
        Poll::Ready(v) => v,
        Poll::Pending => panic!("the fake never waits"),
    }
}

/// An async queue that answers as the blocking one (`main`'s line only), keeping the commit
/// agreement.
struct Same(Arc<dyn QueueStore>);

impl std::fmt::Debug for Same {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Same")
    }
}

impl AsyncQueueLines for Same {
    fn issue<'a>(
        &'a self,
        room: &'a RoomId,
        user: UserId,
        value: TokenValue,
        now: OffsetDateTime,
        watch: &'a CommitWatch,
    ) -> StoreFuture<'a, IssueOutcome> {
        assert!(room.is_main());
        let out = if watch.begin_commit() {
            self.0.issue(user, value, now)
        } else {
            Err(StoreError::Timeout("gave up".into()))
        };
        Box::pin(std::future::ready(out))
    }

    fn find_with_cursor<'a>(
        &'a self,
        room: &'a RoomId,
        value: &'a TokenValue,
    ) -> StoreFuture<'a, Option<(QueueToken, QueueCursor)>> {
        assert!(room.is_main());
        Box::pin(std::future::ready(self.0.find_with_cursor(value)))
    }
}

fn with_async(app: Ticketing) -> Ticketing {
    let queue = app.ports().queue.clone();
    app.with_async_queue(Arc::new(Same(queue)))
}

#[test]
fn the_async_use_cases_answer_what_the_blocking_ones_answer() {
    let who = user();
    let mut w = World::new().with_settings(settings(100));
    w.settings.expect_load_in_memory().returning(|| Some(settings(100)));
    w.random.expect_token().returning(value);
    let cursor = QueueCursor { admitted_through: 1, last_admission_at: Some(t0() - secs(20)), epoch: 0, draw: None };
    w.queue.expect_issue().times(2).returning(move |u, v, now| {
        Ok(IssueOutcome { token: QueueToken::new_waiting(v, u, 4, now), created: true, cursor })
    });
    w.queue
        .expect_find_with_cursor()
        .with(eq(value()))
        .times(2)
        .returning(move |_| Ok(Some((waiting(who, 7), cursor))));
    let app = with_async(w.app());

    let blocking = app.issue_token(who).unwrap();
    let step = app.plan_issue_in_memory(who, &RoomId::main()).expect("all in memory").unwrap();
    let nonblocking = ready(app.issue_planned(step, CommitWatch::new())).unwrap();
    assert_eq!(nonblocking, blocking);
    assert_eq!((nonblocking.view.position, nonblocking.view.estimated_wait_secs), (3, 40));

    let blocking = app.read_token(value().as_str()).unwrap();
    let step = app.plan_read_in_memory(value().as_str()).expect("all in memory").unwrap();
    assert_eq!(ready(app.read_planned(step)).unwrap(), blocking);
    assert_eq!(blocking.position, 6);
}

#[test]
fn the_caller_must_block_without_an_async_queue_or_the_settings_in_memory() {
    let who = user();
    let mut w = World::new();
    w.settings.expect_load_in_memory().returning(|| Some(settings(100)));
    w.random.expect_token().returning(value);
    let app = w.app();
    assert!(app.plan_issue_in_memory(who, &RoomId::main()).is_none(), "no async queue");
    assert!(app.plan_read_in_memory(value().as_str()).is_none(), "no async queue");

    let mut w = World::new();
    w.settings.expect_load_in_memory().returning(|| None);
    let app = with_async(w.app());
    assert!(app.plan_issue_in_memory(who, &RoomId::main()).is_none(), "settings not in memory");
    assert!(app.plan_read_in_memory(value().as_str()).is_none(), "settings not in memory");
    assert!(matches!(app.plan_read_in_memory("nope"), Some(Err(ReadTokenError::Invalid))));
    // A room not in memory (`no_rooms` has none there): looked up on the blocking path.
    let room = RoomId::parse("tour").unwrap();
    assert!(app.plan_issue_in_memory(who, &room).is_none());
}

#[test]
fn an_unknown_token_is_invalid_and_a_caller_that_gave_up_is_answered_timeout() {
    let mut w = World::new();
    w.settings.expect_load_in_memory().returning(|| Some(settings(100)));
    w.random.expect_token().returning(value);
    w.queue.expect_find_with_cursor().returning(|_| Ok(None));
    w.queue.expect_issue().never();
    let app = with_async(w.app());
    let step = app.plan_read_in_memory(value().as_str()).unwrap().unwrap();
    assert_eq!(ready(app.read_planned(step)), Err(ReadTokenError::Invalid));

    let step = app.plan_issue_in_memory(user(), &RoomId::main()).unwrap().unwrap();
    let watch = CommitWatch::new();
    assert!(watch.abandon());
    assert!(matches!(ready(app.issue_planned(step, watch)), Err(IssueTokenError::Store(StoreError::Timeout(_)))));
}
