//! The point of no return of a store call, agreed between a caller that answers on a timer and
//! the adapter that commits.
//!
//! The HTTP layer answers 503 to a request whose store calls have not returned by a deadline (a
//! store server that froze without closing its connections), and 503 promises that nothing was
//! done. A use case may make several store calls in a row, and the store server may wake up
//! after the caller gave up, so an adapter must not start an irrevocable write (a COMMIT) for a
//! caller that has given up; and a caller must not say "nothing was done" once such a write may
//! be on its way. Both go through one state per call ([`CommitWatch`]): the caller *abandons*
//! it, or an adapter *begins to commit* under it, never both — whichever comes first wins.
//!
//! The watch travels with the thread that runs the call (a thread-local), so no port signature
//! carries it; an adapter that commits on another thread (a group-commit batcher) takes the
//! callers' watches along with [`current`] and commits under all of them with [`attached`].
//! Calls with no watch (the scheduler, one-shot commands) always may commit.

use std::cell::RefCell;
use std::sync::atomic::{AtomicU8, Ordering};
use std::sync::Arc;

const RUNNING: u8 = 0;
const COMMITTING: u8 = 1;
const ABANDONED: u8 = 2;

thread_local! {
    static WATCHES: RefCell<Vec<CommitWatch>> = const { RefCell::new(Vec::new()) };
}

/// One call's state: running, committing, or abandoned by its caller. Clones share it.
#[derive(Debug, Clone, Default)]
pub struct CommitWatch(Arc<AtomicU8>);

impl CommitWatch {
    /// A running call's watch.
    #[must_use]
    pub fn new() -> Self {
        Self::default()
    }

    /// Runs `f` on this thread with this watch attached.
    pub fn attach<T>(&self, f: impl FnOnce() -> T) -> T {
        attached(std::slice::from_ref(self), f)
    }

    /// The caller gives up on the call: `true` when the call had not begun to commit (and now
    /// never will: "nothing was done" holds), `false` when a commit may be on its way (the
    /// caller must wait for the real outcome).
    #[must_use]
    pub fn abandon(&self) -> bool {
        match self.0.compare_exchange(RUNNING, ABANDONED, Ordering::AcqRel, Ordering::Acquire) {
            Ok(_) => true,
            Err(state) => state == ABANDONED,
        }
    }

    /// Whether the caller gave up on the call (work not started yet can be skipped).
    #[must_use]
    pub fn abandoned(&self) -> bool {
        self.0.load(Ordering::Acquire) == ABANDONED
    }

    /// Whether the call began to commit.
    #[must_use]
    pub fn committing(&self) -> bool {
        self.0.load(Ordering::Acquire) == COMMITTING
    }

    /// The commit point of a call made without a thread of its own (an async adapter, which
    /// is handed the watch as an argument instead of finding it attached to its thread): `true`
    /// when the adapter may send its write (the caller is still waiting, and from now on waits
    /// for the outcome), `false` when the caller has given up (send nothing, answer
    /// `StoreError::Timeout`). [`commit_point`] does the same for the watches of a thread.
    #[must_use]
    pub fn begin_commit(&self) -> bool {
        self.begin()
    }

    fn begin(&self) -> bool {
        match self.0.compare_exchange(RUNNING, COMMITTING, Ordering::AcqRel, Ordering::Acquire) {
            Ok(_) => true,
            Err(state) => state == COMMITTING,
        }
    }

    /// Undoes a `begin` whose commit was not sent after all (another caller of the same batch
    /// had given up).
    fn unbegin(&self) {
        let _ = self.0.compare_exchange(COMMITTING, RUNNING, Ordering::AcqRel, Ordering::Acquire);
    }
}

/// Runs `f` with all of `watches` attached to this thread (a batch of several callers' calls).
pub fn attached<T>(watches: &[CommitWatch], f: impl FnOnce() -> T) -> T {
    struct Detach(usize);
    impl Drop for Detach {
        fn drop(&mut self) {
            WATCHES.with(|w| w.borrow_mut().truncate(self.0));
        }
    }
    let depth = WATCHES.with(|w| {
        let mut w = w.borrow_mut();
        let depth = w.len();
        w.extend(watches.iter().cloned());
        depth
    });
    let _detach = Detach(depth);
    f()
}

/// The watches attached to this thread, to carry a call to another thread.
#[must_use]
pub fn current() -> Vec<CommitWatch> {
    WATCHES.with(|w| w.borrow().clone())
}

/// Asked by an adapter right before a write it cannot take back (a COMMIT): `true` when it may
/// send it (every caller attached to this thread is still waiting, and from now on will wait for
/// the outcome), `false` when a caller has given up (then roll back and answer as a timeout: the
/// caller has already answered that nothing was done). With several callers attached, all of
/// them must still be waiting.
#[must_use]
pub fn commit_point() -> bool {
    WATCHES.with(|w| {
        let watches = w.borrow();
        for (i, watch) in watches.iter().enumerate() {
            if !watch.begin() {
                for begun in &watches[..i] {
                    begun.unbegin();
                }
                return false;
            }
        }
        true
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_caller_abandons_or_the_adapter_commits_never_both() {
        let call = CommitWatch::new();
        assert!(call.attach(commit_point), "a waiting caller lets the commit go");
        assert!(call.committing());
        assert!(!call.abandon(), "too late to abandon: the caller waits for the outcome");

        let late = CommitWatch::new();
        assert!(late.abandon());
        assert!(!late.attach(commit_point), "an abandoned call never commits");
        assert!(late.abandon(), "abandoning twice is still abandoned");
    }

    #[test]
    fn a_batch_commits_only_if_every_caller_still_waits() {
        let (a, b, c) = (CommitWatch::new(), CommitWatch::new(), CommitWatch::new());
        assert!(c.abandon());
        assert!(!attached(&[a.clone(), b.clone(), c], commit_point));
        assert!(!a.committing() && !b.committing(), "the ones already begun are undone");
        assert!(a.abandon(), "and may still be abandoned");
        assert!(attached(std::slice::from_ref(&b), commit_point));
    }

    #[test]
    fn watches_travel_to_another_thread_and_unwatched_calls_always_commit() {
        assert!(commit_point(), "no caller attached");
        let call = CommitWatch::new();
        let carried = call.attach(current);
        assert!(current().is_empty(), "detached after the call");
        std::thread::spawn(move || attached(&carried, commit_point)).join().ok();
        assert!(call.committing());
    }
}
