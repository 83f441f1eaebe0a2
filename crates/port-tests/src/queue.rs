//! [`domain::ports::QueueStore`]: issuing, reading, admitting and expiring tokens.

use domain::ids::UserId;
use domain::queue::{AdmissionOutcome, OsTokenGenerator, TokenGenerator, TokenStatus, TokenValue};
use time::Duration;

use crate::fixture::{policy, policy_with, Fixture};
use crate::Harness;

/// A user gets one place in line: issuing again returns the live token (WAITING, then
/// ACTIVE) with `created: false`.
pub fn issue_gives_one_token_per_user_and_returns_the_live_one<H: Harness>() {
    let fx = Fixture::<H>::empty(policy());
    let user = UserId::random();
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

    // A store-level call with another value also returns the live token.
    let direct = fx.ports.queue.issue(user, OsTokenGenerator.generate(), fx.now()).unwrap();
    assert!(!direct.created);
    assert_eq!(direct.token.value, first.view.token.value);
}

/// Once the ACTIVE token's time is up (exactly at `expires_at`), issuing gives a new WAITING
/// token and stores the old one as EXPIRED.
pub fn issue_gives_a_new_token_once_the_old_one_expired<H: Harness>() {
    let fx = Fixture::<H>::empty(policy());
    let user = UserId::random();
    let first = fx.app.issue_token(user).unwrap().view.token;
    assert_eq!(fx.app.admit().unwrap(), AdmissionOutcome::Admitted(1));
    fx.advance(Duration::seconds(600));

    let second = fx.app.issue_token(user).unwrap();
    assert!(second.created);
    assert_ne!(second.view.token.value, first.value);
    assert_eq!(second.view.token.seq, first.seq + 1);
    assert_eq!(second.view.status, TokenStatus::Waiting);
    assert_eq!(second.view.position, 1);

    let old = fx.ports.queue.find(&first.value).unwrap().unwrap();
    assert_eq!(old.status, TokenStatus::Expired);
    // The expiry task has nothing left to do for it.
    assert_eq!(fx.app.expire_tokens().unwrap(), 0);
}

/// `seq` is 1, 2, 3, ... in issue order; a WAITING token's position is 1 + the WAITING tokens
/// issued before it, and drops as admission moves the line.
pub fn sequence_is_gapless_and_position_counts_waiting_tokens_ahead<H: Harness>() {
    let fx = Fixture::<H>::empty(policy_with(2, None));
    let users: Vec<UserId> = (0..5).map(|_| UserId::random()).collect();
    let tokens: Vec<_> = users.iter().map(|u| fx.app.issue_token(*u).unwrap().view).collect();
    // Returning an existing token does not consume a number.
    assert!(!fx.app.issue_token(users[0]).unwrap().created);
    let extra = fx.app.issue_token(UserId::random()).unwrap().view;

    let seqs: Vec<i64> = tokens.iter().map(|t| t.token.seq).collect();
    assert_eq!(seqs, vec![1, 2, 3, 4, 5]);
    assert_eq!(extra.token.seq, 6);
    let positions: Vec<i64> = tokens.iter().map(|t| t.position).collect();
    assert_eq!(positions, vec![1, 2, 3, 4, 5]);

    assert_eq!(fx.app.admit().unwrap(), AdmissionOutcome::Admitted(2));
    let read: Vec<_> = tokens.iter().map(|t| fx.app.read_token(t.token.value.as_str()).unwrap()).collect();
    let statuses: Vec<TokenStatus> = read.iter().map(|v| v.status).collect();
    assert_eq!(
        statuses,
        vec![
            TokenStatus::Active,
            TokenStatus::Active,
            TokenStatus::Waiting,
            TokenStatus::Waiting,
            TokenStatus::Waiting
        ]
    );
    let positions: Vec<i64> = read.iter().map(|v| v.position).collect();
    assert_eq!(positions, vec![0, 0, 1, 2, 3]);
}

/// Lookups by value return exactly what was stored, with the cursor; unknown values are
/// `None`.
pub fn find_and_find_with_cursor_return_the_stored_token<H: Harness>() {
    let fx = Fixture::<H>::empty(policy());
    let unknown = OsTokenGenerator.generate();
    assert_eq!(fx.ports.queue.find(&unknown).unwrap(), None);
    assert_eq!(fx.ports.queue.find_with_cursor(&unknown).unwrap(), None);
    let cursor = fx.ports.queue.cursor().unwrap();
    assert_eq!((cursor.admitted_through, cursor.last_admission_at), (0, None));

    let issued = fx.app.issue_token(UserId::random()).unwrap().view.token;
    assert_eq!(fx.ports.queue.find(&issued.value).unwrap(), Some(issued.clone()));
    let (token, cursor) = fx.ports.queue.find_with_cursor(&issued.value).unwrap().unwrap();
    assert_eq!(token, issued);
    assert_eq!(cursor, fx.ports.queue.cursor().unwrap());

    fx.app.admit().unwrap();
    let (token, cursor) = fx.ports.queue.find_with_cursor(&issued.value).unwrap().unwrap();
    assert_eq!(token.status, TokenStatus::Active);
    assert_eq!(token.activated_at, Some(fx.now()));
    assert_eq!(token.expires_at, Some(fx.now() + Duration::seconds(600)));
    assert_eq!((cursor.admitted_through, cursor.last_admission_at), (1, Some(fx.now())));

    // A well-formed value that was never issued is invalid to the use cases too.
    let never = TokenValue::from_bytes([0x42; 32]);
    assert!(fx.app.read_token(never.as_str()).is_err());
}

/// Tokens are admitted oldest first, at most N per tick, one tick per interval.
pub fn admission_is_fifo_over_several_ticks<H: Harness>() {
    let fx = Fixture::<H>::empty(policy_with(2, None));
    let tokens: Vec<_> = (0..5).map(|_| fx.app.issue_token(UserId::random()).unwrap().view.token).collect();
    let status = |i: usize| fx.ports.queue.find(&tokens[i].value).unwrap().unwrap();

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
        let t = status(i);
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
    let fx = Fixture::<H>::empty(policy_with(3, None));
    for _ in 0..10 {
        fx.app.issue_token(UserId::random()).unwrap();
    }
    assert_eq!(fx.app.admit().unwrap(), AdmissionOutcome::Admitted(3));
    assert_eq!(fx.ports.queue.cursor().unwrap().admitted_through, 3);
    let waiting = fx.app.issue_token(UserId::random()).unwrap();
    assert_eq!(waiting.view.position, 8);
}

/// With `max_active`, a tick admits only up to the cap of ACTIVE, unexpired tokens; tokens
/// past their TTL stop counting at once, before the expiry task runs.
pub fn admission_respects_max_active<H: Harness>() {
    let fx = Fixture::<H>::empty(policy_with(10, Some(2)));
    for _ in 0..5 {
        fx.app.issue_token(UserId::random()).unwrap();
    }
    assert_eq!(fx.app.admit().unwrap(), AdmissionOutcome::Admitted(2));
    fx.advance(Duration::seconds(60));
    assert_eq!(fx.app.admit().unwrap(), AdmissionOutcome::Admitted(0));
    // Admitting nothing does not count as an admission: the next check is due at once.
    assert_eq!(fx.app.admit().unwrap(), AdmissionOutcome::Admitted(0));
    assert_eq!(fx.ports.queue.cursor().unwrap().admitted_through, 2);

    fx.advance(Duration::seconds(540)); // the first two reach their TTL exactly
    assert_eq!(fx.app.admit().unwrap(), AdmissionOutcome::Admitted(2));
    assert_eq!(fx.ports.queue.cursor().unwrap().admitted_through, 4);
}

/// Within one interval of the last admission that admitted anything the tick is `NotDue`,
/// with the instant it becomes due; exactly one interval later it runs.
pub fn admission_is_not_due_within_the_interval<H: Harness>() {
    let fx = Fixture::<H>::empty(policy_with(1, None));
    for _ in 0..3 {
        fx.app.issue_token(UserId::random()).unwrap();
    }
    let t0 = fx.now();
    assert_eq!(fx.app.admit().unwrap(), AdmissionOutcome::Admitted(1));
    let due = t0 + Duration::seconds(60);
    assert_eq!(fx.app.admit().unwrap(), AdmissionOutcome::NotDue { next_at: due });
    fx.advance(Duration::seconds(59));
    let p = fx.app.policy().admission;
    assert_eq!(fx.ports.queue.admit(&p, fx.now()).unwrap(), AdmissionOutcome::NotDue { next_at: due });
    assert_eq!(fx.ports.queue.cursor().unwrap().admitted_through, 1);
    fx.advance(Duration::seconds(1));
    assert_eq!(fx.app.admit().unwrap(), AdmissionOutcome::Admitted(1));
    assert_eq!(fx.ports.queue.cursor().unwrap().last_admission_at, Some(due));
}

/// `expire_tokens` changes an ACTIVE token at exactly `expires_at`, not before, and each
/// token once.
pub fn expire_tokens_at_the_exact_boundary_and_only_once<H: Harness>() {
    let fx = Fixture::<H>::empty(policy_with(2, None));
    let a = fx.app.issue_token(UserId::random()).unwrap().view.token;
    let b = fx.app.issue_token(UserId::random()).unwrap().view.token;
    let late = fx.app.issue_token(UserId::random()).unwrap().view.token;
    assert_eq!(fx.app.admit().unwrap(), AdmissionOutcome::Admitted(2));
    let expiry = fx.now() + Duration::seconds(600);

    assert_eq!(fx.ports.queue.expire_tokens(expiry - Duration::microseconds(1)).unwrap(), 0);
    fx.clock.set(expiry);
    assert_eq!(fx.app.expire_tokens().unwrap(), 2);
    assert_eq!(fx.app.expire_tokens().unwrap(), 0);
    for t in [&a, &b] {
        let stored = fx.ports.queue.find(&t.value).unwrap().unwrap();
        assert_eq!(stored.status, TokenStatus::Expired);
    }
    // A WAITING token is never expired by time.
    assert_eq!(fx.ports.queue.find(&late.value).unwrap().unwrap().status, TokenStatus::Waiting);
}
