//! [`domain::ports::QueueStore`]: issuing, reading, admitting, expiring and using up tokens,
//! the stats, and the races a queue store must survive. This is everything a queue-only store
//! (Redis) must prove: the cases that need other ports take them from the harness.

use std::collections::BTreeSet;
use std::sync::Arc;

use adapters_local::OsRandom;
use domain::clock::SkewedClock;
use domain::error::{AuthorizeError, PayError};
use domain::queue::{
    AdmissionOutcome, QueueCursor, QueueToken, SettingsChange, SettingsPatch, TokenStatus, TokenValue,
};
use domain::random::Randomness as _;
use domain::reservation::ReservationStatus;
use domain::service::{Policy, Ports, Ticketing};
use time::{Duration, OffsetDateTime};

use crate::concurrency::race;
use crate::fixture::{Admission, Fixture};
use crate::Harness;

/// A user gets one place in line: issuing again returns the live token (WAITING, then
/// ACTIVE) with `created: false`.
pub fn issue_gives_one_token_per_user_and_returns_the_live_one<H: Harness>() {
    let fx = Fixture::<H>::empty(Admission::default());
    let user = fx.user();
    let first = fx.app.issue_token(user).unwrap();
    assert!(first.created);
    assert_eq!(first.view.status, TokenStatus::Waiting);
    assert_eq!(first.view.token.user_id, user);
    assert_eq!(first.view.token.issued_at, fx.now());
    assert_eq!((first.view.token.activated_at, first.view.token.expires_at), (None, None));

    let again = fx.app.issue_token(user).unwrap();
    assert!(!again.created);
    assert_eq!(again.view.token, first.view.token);

    assert_eq!(fx.app.admit().unwrap(), AdmissionOutcome::Admitted(1));
    fx.advance(Duration::seconds(599));
    let while_active = fx.app.issue_token(user).unwrap();
    assert!(!while_active.created);
    assert_eq!(while_active.view.token.value, first.view.token.value);
    assert_eq!(while_active.view.status, TokenStatus::Active);

    // A store-level call with another value also returns the live token, with the cursor.
    let direct = fx.ports.queue.issue(user, OsRandom.token(), fx.now()).unwrap();
    assert!(!direct.created);
    assert_eq!(direct.token.value, first.view.token.value);
    assert_eq!(direct.cursor.admitted_through, 1);
}

/// Once the ACTIVE token's time is up (exactly at `expires_at`), issuing gives a new WAITING
/// token and stores the old one as EXPIRED.
pub fn issue_gives_a_new_token_once_the_old_one_expired<H: Harness>() {
    let fx = Fixture::<H>::empty(Admission::default());
    let user = fx.user();
    let first = fx.issue(user);
    assert_eq!(fx.app.admit().unwrap(), AdmissionOutcome::Admitted(1));
    fx.advance(Duration::seconds(600));

    let second = fx.app.issue_token(user).unwrap();
    assert!(second.created);
    assert_ne!(second.view.token.value, first.value);
    assert_eq!(second.view.token.seq, first.seq + 1);
    assert_eq!(second.view.status, TokenStatus::Waiting);
    assert_eq!(second.view.position, 1);

    let old = fx.token(&first);
    assert_eq!(old.status, TokenStatus::Expired);
    assert_eq!(old.expires_at, Some(fx.now()), "its own expiry is kept");
    // The expiry task has nothing left to do for it.
    assert_eq!(fx.app.expire_tokens().unwrap(), 0);
}

/// `seq` is 1, 2, 3, ... in issue order; a WAITING token's position is 1 + the WAITING tokens
/// issued before it, and drops as admission moves the line.
pub fn sequence_is_gapless_and_position_counts_waiting_tokens_ahead<H: Harness>() {
    let fx = Fixture::<H>::empty(Admission::batch(2, None));
    let users: Vec<_> = (0..5).map(|_| fx.user()).collect();
    let tokens: Vec<_> = users.iter().map(|u| fx.app.issue_token(*u).unwrap().view).collect();
    // Returning an existing token does not consume a number.
    assert!(!fx.app.issue_token(users[0]).unwrap().created);
    let extra = fx.app.issue_token(fx.user()).unwrap().view;

    let seqs: Vec<i64> = tokens.iter().map(|t| t.token.seq).collect();
    assert_eq!(seqs, vec![1, 2, 3, 4, 5]);
    assert_eq!(extra.token.seq, 6);
    let positions: Vec<i64> = tokens.iter().map(|t| t.position).collect();
    assert_eq!(positions, vec![1, 2, 3, 4, 5]);

    assert_eq!(fx.app.admit().unwrap(), AdmissionOutcome::Admitted(2));
    let read: Vec<_> = tokens.iter().map(|t| fx.app.read_token(t.token.value.as_str()).unwrap()).collect();
    let statuses: Vec<TokenStatus> = read.iter().map(|v| v.status).collect();
    use TokenStatus::{Active, Waiting};
    assert_eq!(statuses, vec![Active, Active, Waiting, Waiting, Waiting]);
    let positions: Vec<i64> = read.iter().map(|v| v.position).collect();
    assert_eq!(positions, vec![0, 0, 1, 2, 3]);
}

/// Lookups by value return exactly what was stored, with the cursor; unknown values are
/// `None`.
pub fn find_and_find_with_cursor_return_the_stored_token<H: Harness>() {
    let fx = Fixture::<H>::empty(Admission::default());
    let unknown = OsRandom.token();
    assert_eq!(fx.ports.queue.find(&unknown).unwrap(), None);
    assert_eq!(fx.ports.queue.find_with_cursor(&unknown).unwrap(), None);
    assert_eq!(
        fx.ports.queue.cursor().unwrap(),
        QueueCursor { admitted_through: 0, last_admission_at: None, epoch: 0, draw: None }
    );

    let issued = fx.issue(fx.user());
    assert_eq!(fx.ports.queue.find(&issued.value).unwrap(), Some(issued.clone()));
    let (token, cursor) = fx.ports.queue.find_with_cursor(&issued.value).unwrap().unwrap();
    assert_eq!(token, issued);
    assert_eq!(cursor, fx.ports.queue.cursor().unwrap());
    // The line's epoch: set by the first issue where the store names its lines, and kept.
    let epoch = cursor.epoch;

    fx.app.admit().unwrap();
    let (token, cursor) = fx.ports.queue.find_with_cursor(&issued.value).unwrap().unwrap();
    assert_eq!(token.status, TokenStatus::Active);
    assert_eq!(token.activated_at, Some(fx.now()));
    assert_eq!(token.expires_at, Some(fx.now() + Duration::seconds(600)));
    assert_eq!(cursor, QueueCursor { admitted_through: 1, last_admission_at: Some(fx.now()), epoch, draw: None });
    assert_eq!(fx.ports.queue.find(&issued.value).unwrap(), Some(token));

    // A well-formed value that was never issued is invalid to the use cases too.
    let never = TokenValue::from_bytes([0x42; 32]);
    assert!(fx.app.read_token(never.as_str()).is_err());
    assert_eq!(fx.app.authorize(never.as_str()), Err(AuthorizeError::Invalid));
}

/// Tokens are admitted oldest first, at most N per tick, one tick per interval.
pub fn admission_is_fifo_over_several_ticks<H: Harness>() {
    let fx = Fixture::<H>::empty(Admission::batch(2, None));
    let tokens: Vec<_> = (0..5).map(|_| fx.issue(fx.user())).collect();

    let mut admitted_at = Vec::new();
    for (tick, expected) in [(0, 2), (1, 2), (2, 1)] {
        assert_eq!(fx.app.admit().unwrap(), AdmissionOutcome::Admitted(expected), "tick {tick}");
        admitted_at.push(fx.now());
        let cursor = fx.ports.queue.cursor().unwrap();
        assert_eq!(cursor.admitted_through, [2, 4, 5][tick]);
        assert_eq!(cursor.last_admission_at, Some(fx.now()));
        fx.advance(Duration::seconds(60));
    }
    for (i, at) in [0, 0, 1, 1, 2].into_iter().map(|tick| admitted_at[tick]).enumerate() {
        let t = fx.token(&tokens[i]);
        assert_eq!(t.status, TokenStatus::Active, "token {i}");
        assert_eq!(t.activated_at, Some(at), "token {i} admitted in issue order");
        assert_eq!(t.expires_at, Some(at + Duration::seconds(600)));
    }
    // Nobody waits: the tick runs, admits nothing and does not move `last_admission_at`.
    let before = fx.ports.queue.cursor().unwrap();
    assert_eq!(fx.app.admit().unwrap(), AdmissionOutcome::Admitted(0));
    assert_eq!(fx.ports.queue.cursor().unwrap(), before);
}

/// One tick admits at most N even with many waiting.
pub fn admission_admits_at_most_the_batch<H: Harness>() {
    let fx = Fixture::<H>::empty(Admission::batch(3, None));
    for _ in 0..10 {
        let _ = fx.issue(fx.user());
    }
    assert_eq!(fx.app.admit().unwrap(), AdmissionOutcome::Admitted(3));
    assert_eq!(fx.ports.queue.cursor().unwrap().admitted_through, 3);
    let waiting = fx.app.issue_token(fx.user()).unwrap();
    assert_eq!(waiting.view.position, 8);
}

/// With `max_active`, a tick admits only up to the cap of ACTIVE, unexpired tokens; tokens
/// past their TTL stop counting at once, before the expiry task runs.
pub fn admission_respects_max_active<H: Harness>() {
    let fx = Fixture::<H>::empty(Admission::batch(10, Some(2)));
    for _ in 0..5 {
        let _ = fx.issue(fx.user());
    }
    assert_eq!(fx.app.admit().unwrap(), AdmissionOutcome::Admitted(2));
    fx.advance(Duration::seconds(60));
    assert_eq!(fx.app.admit().unwrap(), AdmissionOutcome::Admitted(0));
    // Admitting nothing does not count as an admission: the next check is due at once.
    assert_eq!(fx.app.admit().unwrap(), AdmissionOutcome::Admitted(0));
    assert_eq!(fx.ports.queue.cursor().unwrap().admitted_through, 2);

    fx.advance(Duration::seconds(539)); // a second before their TTL
    assert_eq!(fx.app.admit().unwrap(), AdmissionOutcome::Admitted(0));
    fx.advance(Duration::seconds(1)); // the first two reach their TTL exactly
    assert_eq!(fx.app.admit().unwrap(), AdmissionOutcome::Admitted(2));
    assert_eq!(fx.ports.queue.cursor().unwrap().admitted_through, 4);
}

/// Within one interval of the last admission that admitted anything the tick is `NotDue`,
/// with the time left until it is due; exactly one interval later it runs
/// (`AdmissionPolicy::is_due`).
pub fn admission_is_not_due_within_the_interval<H: Harness>() {
    let fx = Fixture::<H>::empty(Admission::batch(1, None));
    for _ in 0..3 {
        let _ = fx.issue(fx.user());
    }
    let t0 = fx.now();
    assert_eq!(fx.app.admit().unwrap(), AdmissionOutcome::Admitted(1));
    assert_eq!(fx.app.admit().unwrap(), AdmissionOutcome::NotDue { wait: Duration::seconds(60) });
    fx.advance(Duration::seconds(59));
    let policy = fx.ports.settings.load().unwrap().admission;
    assert_eq!(fx.ports.queue.admit(&policy).unwrap(), AdmissionOutcome::NotDue { wait: Duration::seconds(1) });
    fx.clock.set(t0 + Duration::seconds(60) - Duration::microseconds(1));
    assert_eq!(fx.ports.queue.admit(&policy).unwrap(), AdmissionOutcome::NotDue { wait: Duration::microseconds(1) });
    assert_eq!(fx.ports.queue.cursor().unwrap().admitted_through, 1);
    fx.clock.set(t0 + Duration::seconds(60));
    assert_eq!(fx.app.admit().unwrap(), AdmissionOutcome::Admitted(1));
    assert_eq!(fx.ports.queue.cursor().unwrap().last_admission_at, Some(t0 + Duration::seconds(60)));
}

/// Admission is timed on the store's clock: an instance whose own clock runs 30 s ahead (its
/// domain clock skewed, the store's clock untouched) neither admits early nor writes its own
/// time, so two instances together still admit at most N per interval.
pub fn admission_is_timed_on_the_store_clock_not_the_callers<H: Harness>() {
    let fx = Fixture::<H>::empty(Admission { batch: 2, interval_secs: 20, ttl_secs: 600, max_active: None });
    let tokens: Vec<_> = (0..40).map(|_| fx.issue(fx.user())).collect();
    let skewed_clock = Arc::new(SkewedClock::new(Arc::new(fx.clock.clone()), Duration::seconds(30)));
    let skewed = Ticketing::new(Ports { clock: skewed_clock, ..fx.ports.clone() }, Policy::default());
    let t0 = fx.now();

    assert_eq!(fx.app.admit().unwrap(), AdmissionOutcome::Admitted(2));
    // Its own clock says 30 s later, past the interval; the store says 0 s.
    assert_eq!(skewed.admit().unwrap(), AdmissionOutcome::NotDue { wait: Duration::seconds(20) });
    fx.advance(Duration::seconds(10));
    assert_eq!(skewed.admit().unwrap(), AdmissionOutcome::NotDue { wait: Duration::seconds(10) });
    fx.advance(Duration::seconds(10));
    assert_eq!(skewed.admit().unwrap(), AdmissionOutcome::Admitted(2));
    assert_eq!(fx.app.admit().unwrap(), AdmissionOutcome::NotDue { wait: Duration::seconds(20) });
    let third = fx.token(&tokens[2]);
    assert_eq!(third.activated_at, Some(t0 + Duration::seconds(20)), "the store's time, not the caller's");
    assert_eq!(third.expires_at, Some(t0 + Duration::seconds(620)));
    assert_eq!(fx.ports.queue.stats().unwrap().now, fx.now());

    // Both instances checking every 5 s, at the same instant from two threads: every batch is
    // at most N and batches are at least M apart on the store's clock.
    for _ in 0..16 {
        fx.advance(Duration::seconds(5));
        let apps = [&fx.app, &skewed];
        race(2, |i| apps[i].admit().unwrap());
    }
    let mut batches: Vec<(OffsetDateTime, usize)> = Vec::new();
    for t in &tokens {
        let Some(at) = fx.token(t).activated_at else { continue };
        match batches.last_mut() {
            Some((last, n)) if *last == at => *n += 1,
            _ => batches.push((at, 1)),
        }
    }
    assert!(batches.iter().all(|(_, n)| *n <= 2), "{batches:?}");
    assert!(batches.windows(2).all(|w| w[1].0 - w[0].0 >= Duration::seconds(20)), "{batches:?}");
    assert!(batches.iter().all(|(at, _)| *at <= fx.now()), "no activation in the store's future");
    assert_eq!(batches.len(), 6, "t0, +20 s, then every 20 s over 80 s: {batches:?}");
}

/// While an operator has paused admission nobody is admitted, however long it lasts; tokens
/// are still issued and polled, and say so. Resuming admits at the next check.
pub fn paused_admission_admits_nobody_until_resumed<H: Harness>() {
    let fx = Fixture::<H>::empty(Admission::default());
    let tokens: Vec<_> = (0..3).map(|_| fx.issue(fx.user())).collect();
    let pause = SettingsPatch::new(SettingsChange { paused: Some(true), ..SettingsChange::default() }).unwrap();
    fx.app.update_queue("suite", &pause).unwrap();

    assert_eq!(fx.app.admit().unwrap(), AdmissionOutcome::Paused);
    fx.advance(Duration::seconds(120));
    assert_eq!(fx.app.admit().unwrap(), AdmissionOutcome::Paused);
    assert_eq!(fx.app.tick().unwrap().admission, AdmissionOutcome::Paused);
    let cursor = fx.ports.queue.cursor().unwrap();
    assert_eq!(cursor, QueueCursor { epoch: cursor.epoch, ..QueueCursor::default() }, "nobody admitted");
    let late = fx.app.issue_token(fx.user()).unwrap();
    assert!(late.created && late.view.paused);
    assert_eq!(late.view.position, 4);
    let view = fx.app.read_token(tokens[0].value.as_str()).unwrap();
    assert_eq!((view.status, view.position, view.paused), (TokenStatus::Waiting, 1, true));
    let state = fx.app.queue_state().unwrap();
    assert_eq!((state.stats.waiting, state.next_admission_at), (4, None));

    let resume = SettingsPatch::new(SettingsChange { paused: Some(false), ..SettingsChange::default() }).unwrap();
    fx.app.update_queue("suite", &resume).unwrap();
    assert_eq!(fx.app.admit().unwrap(), AdmissionOutcome::Admitted(4));
    assert!(!fx.app.read_token(tokens[0].value.as_str()).unwrap().paused);
}

/// `expire_tokens` changes an ACTIVE token at exactly `expires_at` on the store's clock, not
/// before, and each token once; a WAITING token is never expired by time.
pub fn expire_tokens_at_the_exact_boundary_and_only_once<H: Harness>() {
    let fx = Fixture::<H>::empty(Admission::batch(2, None));
    let a = fx.issue(fx.user());
    let b = fx.issue(fx.user());
    let late = fx.issue(fx.user());
    assert_eq!(fx.app.admit().unwrap(), AdmissionOutcome::Admitted(2));
    let expiry = fx.now() + Duration::seconds(600);

    fx.clock.set(expiry - Duration::microseconds(1));
    assert_eq!(fx.ports.queue.expire_tokens(100).unwrap(), 0);
    assert_eq!(fx.token(&a).status, TokenStatus::Active);
    fx.clock.set(expiry);
    assert_eq!(fx.app.expire_tokens().unwrap(), 2);
    assert_eq!(fx.app.expire_tokens().unwrap(), 0);
    for t in [&a, &b] {
        let stored = fx.token(t);
        assert_eq!((stored.status, stored.expires_at), (TokenStatus::Expired, Some(expiry)));
    }
    fx.advance(Duration::days(1));
    assert_eq!(fx.ports.queue.expire_tokens(100).unwrap(), 0);
    assert_eq!(fx.token(&late).status, TokenStatus::Waiting);
}

/// `expire_tokens(limit)` changes at most `limit` tokens per call, and the use case runs
/// batches until one comes back short or the per-tick cap is reached.
pub fn expire_tokens_works_in_batches_of_the_limit<H: Harness>() {
    let mut fx = Fixture::<H>::empty(Admission::batch(100, None));
    let tokens: Vec<_> = (0..7).map(|_| fx.issue(fx.user())).collect();
    assert_eq!(fx.app.admit().unwrap(), AdmissionOutcome::Admitted(7));
    fx.advance(Duration::seconds(600));
    let counts: Vec<u64> = (0..4).map(|_| fx.ports.queue.expire_tokens(3).unwrap()).collect();
    assert_eq!(counts, vec![3, 3, 1, 0]);
    assert!(tokens.iter().all(|t| fx.token(t).status == TokenStatus::Expired));

    let more: Vec<_> = (0..7).map(|_| fx.issue(fx.user())).collect();
    assert_eq!(fx.app.admit().unwrap(), AdmissionOutcome::Admitted(7));
    fx.advance(Duration::seconds(600));
    fx.set_policy(Policy { sweep_batch: 2, sweep_batches_per_tick: 2, ..Policy::default() });
    assert_eq!(fx.app.expire_tokens().unwrap(), 4, "two batches of two per tick");
    assert_eq!(fx.app.expire_tokens().unwrap(), 3, "two, then a short batch of one");
    assert_eq!(fx.app.expire_tokens().unwrap(), 0);
    assert!(more.iter().all(|t| fx.token(t).status == TokenStatus::Expired));
}

/// `use_up` expires the ACTIVE token it names, at the time given, once; it never touches
/// another token, and a WAITING token (even one of the same user) stays in line, so the line's
/// positions and the admission count stay exact.
pub fn use_up_expires_only_that_active_token<H: Harness>() {
    let fx = Fixture::<H>::empty(Admission::batch(2, None));
    let (u, v) = (fx.user(), fx.user());
    let a = fx.issue(u);
    let other = fx.issue(v);
    assert_eq!(fx.app.admit().unwrap(), AdmissionOutcome::Admitted(2));
    let activated = fx.now();
    fx.advance(Duration::seconds(5));
    let at = fx.now();

    fx.ports.queue.use_up(&a.value, at).unwrap();
    let used = fx.token(&a);
    assert_eq!((used.status, used.expires_at, used.activated_at), (TokenStatus::Expired, Some(at), Some(activated)));
    assert_eq!(fx.token(&other).status, TokenStatus::Active);
    fx.ports.queue.use_up(&a.value, at + Duration::seconds(1)).unwrap();
    assert_eq!(fx.token(&a), used, "idempotent");
    fx.ports.queue.use_up(&OsRandom.token(), at).unwrap();

    // The user queues again: the new WAITING token is not used up by a late call for it.
    let b = fx.issue(u);
    assert_eq!((b.status, b.seq), (TokenStatus::Waiting, 3));
    fx.ports.queue.use_up(&b.value, fx.now()).unwrap();
    assert_eq!(fx.token(&b), b);

    // A payment's `use_up` that lands after the token lapsed and the user queued again (two
    // instances, or the queue in another store than the payment) leaves the new token alone.
    fx.clock.set(activated + Duration::seconds(600));
    let w = fx.issue(v);
    assert_eq!((w.status, w.seq), (TokenStatus::Waiting, 4));
    assert_eq!(fx.token(&other).status, TokenStatus::Expired, "issue stored the lapsed one EXPIRED");
    fx.ports.queue.use_up(&other.value, activated + Duration::seconds(599)).unwrap();
    assert_eq!(fx.token(&w), w);
    assert_eq!(fx.app.read_token(w.value.as_str()).unwrap().position, 2);
    let stats = fx.ports.queue.stats().unwrap();
    assert_eq!((stats.waiting, stats.issued_through), (2, 4));
    assert_eq!(fx.app.admit().unwrap(), AdmissionOutcome::Admitted(2));
    assert_eq!([fx.token(&b).status, fx.token(&w).status], [TokenStatus::Active; 2]);
    assert_eq!(fx.ports.queue.stats().unwrap().waiting, 0);
}

/// Through the use case: a payment uses up the token that paid (EXPIRED at the payment's
/// instant) and no other; the payer may queue again.
pub fn a_payment_uses_up_only_the_token_that_paid<H: Harness>() {
    let fx = Fixture::<H>::seeded();
    let users = fx.active_users(2);
    let (payer, bystander) = (&users[0], &users[1]);
    fx.charge(payer.user_id(), 1_000_000);
    let r = fx.hold(payer, 0, 1);
    fx.advance(Duration::seconds(3));
    let p = fx.pay(payer, r.id).unwrap();

    let used = fx.token(payer.token());
    assert_eq!((used.status, used.expires_at), (TokenStatus::Expired, Some(p.paid_at)));
    assert_eq!(fx.token(bystander.token()), *bystander.token());
    assert_eq!(fx.app.authorize(payer.token().value.as_str()), Err(AuthorizeError::Expired));
    assert_eq!(fx.app.read_token(payer.token().value.as_str()).unwrap().status, TokenStatus::Expired);
    let again = fx.app.issue_token(payer.user_id()).unwrap();
    assert!(again.created);
    assert_eq!(again.view.status, TokenStatus::Waiting);
    let stats = fx.ports.queue.stats().unwrap();
    assert_eq!((stats.waiting, stats.active), (1, 1));
}

/// The operator's counts: WAITING tokens, ACTIVE ones unexpired on the store's clock (a lapsed
/// one stops counting before the expiry task runs), the last seq issued, the cursor, and the
/// store's time.
pub fn stats_count_waiting_and_live_active_tokens<H: Harness>() {
    let fx = Fixture::<H>::empty(Admission::batch(2, None));
    let stats = fx.ports.queue.stats().unwrap();
    assert_eq!((stats.waiting, stats.active, stats.issued_through), (0, 0, 0));
    assert_eq!((stats.cursor, stats.now), (QueueCursor::default(), fx.now()));

    for _ in 0..5 {
        let _ = fx.issue(fx.user());
    }
    let t0 = fx.now();
    assert_eq!(fx.app.admit().unwrap(), AdmissionOutcome::Admitted(2));
    let stats = fx.ports.queue.stats().unwrap();
    assert_eq!((stats.waiting, stats.active, stats.issued_through), (3, 2, 5));
    let epoch = fx.ports.queue.cursor().unwrap().epoch;
    assert_eq!(stats.cursor, QueueCursor { admitted_through: 2, last_admission_at: Some(t0), epoch, draw: None });

    fx.clock.set(t0 + Duration::seconds(600) - Duration::microseconds(1));
    assert_eq!(fx.ports.queue.stats().unwrap().active, 2);
    fx.clock.set(t0 + Duration::seconds(600));
    let stats = fx.ports.queue.stats().unwrap();
    assert_eq!((stats.waiting, stats.active, stats.now), (3, 0, fx.now()));
    let state = fx.app.queue_state().unwrap();
    assert_eq!((state.stats, state.next_admission_at), (stats, Some(fx.now())));
}

/// Readiness.
pub fn ping_answers<H: Harness>() {
    let fx = Fixture::<H>::empty(Admission::default());
    assert_eq!(fx.ports.queue.ping(), Ok(()));
}

/// 64 concurrent issues for one user yield one token, created once, and burn no number.
pub fn concurrent_issues_for_one_user_yield_one_token<H: Harness>() {
    const THREADS: usize = 64;
    let fx = Fixture::<H>::empty(Admission::default());
    let user = fx.user();
    let w = &fx.world;
    let results = race(THREADS, |_| w.app.issue_token(user).unwrap());
    assert_eq!(results.iter().filter(|r| r.created).count(), 1);
    let values: BTreeSet<&str> = results.iter().map(|r| r.view.token.value.as_str()).collect();
    assert_eq!(values.len(), 1);
    assert_eq!(fx.issue(fx.user()).seq, 2, "no sequence number was burnt by the losers");
    assert_eq!(fx.ports.queue.stats().unwrap().issued_through, 2);
}

/// 64 users issuing at once get the numbers 1 to 64, each once, and positions equal to them.
pub fn concurrent_issues_of_many_users_number_them_gaplessly<H: Harness>() {
    const THREADS: usize = 64;
    let fx = Fixture::<H>::empty(Admission::default());
    let w = &fx.world;
    let results = race(THREADS, |_| w.app.issue_token(w.user()).unwrap());
    assert!(results.iter().all(|r| r.created));
    let seqs: BTreeSet<i64> = results.iter().map(|r| r.view.token.seq).collect();
    assert_eq!(seqs, (1..=64).collect());
    for r in &results {
        let view = fx.app.read_token(r.view.token.value.as_str()).unwrap();
        assert_eq!(view.position, r.view.token.seq);
    }
}

/// Concurrent admission ticks (as from several instances) together admit one batch.
pub fn concurrent_admissions_admit_at_most_one_batch<H: Harness>() {
    const THREADS: usize = 8;
    let fx = Fixture::<H>::empty(Admission::batch(5, None));
    let tokens: Vec<_> = (0..20).map(|_| fx.issue(fx.user())).collect();
    let w = &fx.world;
    let results = race(THREADS, |_| w.app.admit().unwrap());
    assert_eq!(results.iter().map(AdmissionOutcome::admitted).sum::<u64>(), 5);
    assert!(!results.contains(&AdmissionOutcome::Paused));
    assert_eq!(fx.ports.queue.cursor().unwrap().admitted_through, 5);
    let active: Vec<bool> = tokens.iter().map(|t| fx.token(t).status == TokenStatus::Active).collect();
    assert_eq!(active, (0..20).map(|i| i < 5).collect::<Vec<_>>(), "the five oldest");
}

/// Concurrent expiry sweeps (as from several instances) together change each token once.
pub fn concurrent_expiry_sweeps_change_each_token_once<H: Harness>() {
    const THREADS: usize = 8;
    let fx = Fixture::<H>::empty(Admission::default());
    let tokens: Vec<_> = (0..20).map(|_| fx.issue(fx.user())).collect();
    assert_eq!(fx.app.admit().unwrap(), AdmissionOutcome::Admitted(20));
    fx.advance(Duration::seconds(600));
    let w = &fx.world;
    let counts = race(THREADS, |_| {
        let mut total = 0;
        loop {
            let n = w.ports.queue.expire_tokens(3).unwrap();
            if n == 0 {
                return total;
            }
            total += n;
        }
    });
    assert_eq!(counts.iter().sum::<u64>(), 20);
    assert!(tokens.iter().all(|t| fx.token(t).status == TokenStatus::Expired));
}

/// A token pays once: concurrent payments made with one ACTIVE token for different held
/// reservations, each of which would succeed alone, give exactly one payment; the others get
/// `TokenExpired` and change nothing.
pub fn concurrent_payments_with_one_token_pay_once<H: Harness>() {
    const ROUNDS: usize = 5;
    const SEATS: u32 = 4;
    let fx = Fixture::<H>::seeded();
    for round in 0..ROUNDS {
        let who = fx.active_user();
        fx.charge(who.user_id(), 10_000_000);
        let holds: Vec<_> =
            (1..=SEATS).map(|n| fx.hold(&who, round % 6, n + SEATS * u32::try_from(round).unwrap())).collect();
        let w = &fx.world;
        let results = race(holds.len(), |i| w.pay(&who, holds[i].id));
        let winners: Vec<_> = results.iter().filter_map(|r| r.as_ref().ok()).collect();
        assert_eq!(winners.len(), 1, "round {round}: {results:?}");
        assert!(results.iter().filter(|r| r.is_err()).all(|r| *r == Err(PayError::TokenExpired)), "{results:?}");
        let paid = winners[0];
        assert_eq!(fx.ports.accounts.balance(who.user_id()).unwrap().get(), 10_000_000 - paid.amount.get());
        for r in &holds {
            let expected = if r.id == paid.reservation_id { ReservationStatus::Paid } else { ReservationStatus::Held };
            assert_eq!(fx.stored(r.id).status, expected);
        }
        assert_eq!(fx.ledger(who.user_id()).len(), 2, "one charge, one payment");
        let token: QueueToken = fx.token(who.token());
        assert_eq!((token.status, token.expires_at), (TokenStatus::Expired, Some(paid.paid_at)));
    }
}
