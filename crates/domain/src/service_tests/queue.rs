//! Steps 1-3: issuing and reading tokens, authorization, admission and the sweeps.

use super::*;

#[test]
fn issue_stores_a_new_token_with_a_fresh_value_at_now_and_reports_created() {
    let who = user();
    let mut w = World::new().with_settings(settings(100));
    w.random.expect_token().times(1).returning(value);
    let stored = QueueToken::new_waiting(value(), who, 4, t0());
    let returned = stored.clone();
    let cursor = QueueCursor { admitted_through: 1, last_admission_at: Some(t0() - secs(20)), epoch: 0, draw: None };
    w.queue
        .expect_issue()
        .with(eq(who), eq(value()), eq(t0()))
        .times(1)
        .returning(move |_, _, _| Ok(IssueOutcome { token: returned.clone(), created: true, cursor }));
    let issued = w.app().issue_token(who).unwrap();
    assert!(issued.created);
    assert_eq!(issued.view.token, stored);
    assert_eq!((issued.view.status, issued.view.position, issued.view.paused), (TokenStatus::Waiting, 3, false));
    assert_eq!(issued.view.estimated_wait_secs, 40, "the next tick in 40 s admits positions 1..=100");
}

#[test]
fn issue_returns_the_existing_token_as_not_created() {
    let who = user();
    let mut w = World::new().with_settings(settings(100));
    w.random.expect_token().returning(|| TokenValue::from_bytes([1; 32]));
    let existing = active(who, t0() + secs(100));
    let returned = existing.clone();
    w.queue.expect_issue().returning(move |_, _, _| {
        Ok(IssueOutcome { token: returned.clone(), created: false, cursor: QueueCursor::default() })
    });
    let issued = w.app().issue_token(who).unwrap();
    assert!(!issued.created);
    assert_eq!(issued.view.token, existing);
    assert_eq!(
        (issued.view.status, issued.view.position, issued.view.estimated_wait_secs),
        (TokenStatus::Active, 0, 0)
    );
}

#[test]
fn an_issued_token_says_admission_is_paused() {
    let mut w = World::new().with_settings(QueueSettings { paused: true, ..settings(100) });
    w.random.expect_token().returning(value);
    w.queue.expect_issue().returning(|u, v, now| {
        Ok(IssueOutcome { token: QueueToken::new_waiting(v, u, 1, now), created: true, cursor: QueueCursor::default() })
    });
    let view = w.app().issue_token(user()).unwrap().view;
    assert!(view.paused);
    assert_eq!(view.poll_after_secs, 20, "paused: the slowest poll pace");
}

#[test]
fn issue_propagates_store_errors() {
    let mut w = World::new();
    w.settings.expect_load().returning(|| Err(down()));
    w.random.expect_token().returning(value);
    assert_eq!(w.app().issue_token(user()), Err(IssueTokenError::Store(down())));

    let mut w = World::new().with_settings(settings(100));
    w.random.expect_token().returning(value);
    w.queue.expect_issue().returning(|_, _, _| Err(down()));
    assert_eq!(w.app().issue_token(user()), Err(IssueTokenError::Store(down())));
}

// ---- 2: read a token ---------------------------------------------------------------------------

#[test]
fn read_token_rejects_malformed_values_without_asking_any_store() {
    let app = World::new().app();
    let upper = value().as_str().to_uppercase();
    for bad in ["", "abc", upper.as_str(), &value().as_str()[1..], &format!("{} ", value().as_str())] {
        assert_eq!(app.read_token(bad), Err(ReadTokenError::Invalid), "{bad:?}");
    }
}

#[test]
fn read_token_unknown_is_invalid() {
    let mut w = World::new().with_settings(settings(100));
    w.queue.expect_find_with_cursor().with(eq(value())).returning(|_| Ok(None));
    assert_eq!(w.app().read_token(value().as_str()), Err(ReadTokenError::Invalid));
}

#[test]
fn read_token_reports_position_and_wait_of_a_waiting_token_under_the_settings_in_force() {
    let who = user();
    let mut w = World::new().with_settings(settings(2));
    let cursor = QueueCursor { admitted_through: 10, last_admission_at: Some(t0() - secs(20)), epoch: 0, draw: None };
    w.queue.expect_find_with_cursor().returning(move |_| Ok(Some((waiting(who, 13), cursor))));
    let view = w.app().read_token(value().as_str()).unwrap();
    assert_eq!((view.status, view.position), (TokenStatus::Waiting, 3));
    // Positions 1-2 go in 40 s, position 3 one interval later.
    assert_eq!(view.estimated_wait_secs, 100);
}

#[test]
fn read_token_reads_an_active_token_as_expired_from_its_exact_expiry() {
    let who = user();
    let mut w = World::new().with_settings(settings(100));
    w.queue.expect_find_with_cursor().returning(move |_| Ok(Some((active(who, t0()), QueueCursor::default()))));
    let view = w.app().read_token(value().as_str()).unwrap();
    assert_eq!((view.status, view.position), (TokenStatus::Expired, 0));

    let mut w = World::new().with_settings(settings(100));
    let alive = active(who, t0() + Duration::microseconds(1));
    w.queue.expect_find_with_cursor().returning(move |_| Ok(Some((alive.clone(), QueueCursor::default()))));
    assert_eq!(w.app().read_token(value().as_str()).unwrap().status, TokenStatus::Active);
}

#[test]
fn read_token_propagates_store_errors() {
    let mut w = World::new().with_settings(settings(100));
    w.queue.expect_find_with_cursor().returning(|_| Err(down()));
    assert_eq!(w.app().read_token(value().as_str()), Err(ReadTokenError::Store(down())));

    let mut w = World::new();
    w.settings.expect_load().returning(|| Err(down()));
    w.queue.expect_find_with_cursor().returning(|_| Ok(None));
    assert_eq!(w.app().read_token(value().as_str()), Err(ReadTokenError::Store(down())));
}

#[test]
fn read_token_in_memory_answers_only_when_token_and_settings_are_both_in_memory() {
    let who = user();
    assert_eq!(World::new().app().read_token_in_memory("nope"), Some(Err(ReadTokenError::Invalid)));

    let mut w = World::new();
    w.queue.expect_find_in_memory().returning(|_| None);
    w.settings.expect_load_in_memory().returning(|| Some(settings(100)));
    assert_eq!(w.app().read_token_in_memory(value().as_str()), None, "a cache miss goes to a blocking thread");

    let mut w = World::new();
    w.queue.expect_find_in_memory().returning(move |_| Some((waiting(who, 5), QueueCursor::default())));
    w.settings.expect_load_in_memory().returning(|| None);
    assert_eq!(w.app().read_token_in_memory(value().as_str()), None, "stale settings go to the store");

    let mut w = World::new();
    w.queue.expect_find_in_memory().returning(move |_| Some((waiting(who, 5), QueueCursor::default())));
    w.settings.expect_load_in_memory().returning(|| Some(settings(100)));
    let view = w.app().read_token_in_memory(value().as_str()).unwrap().unwrap();
    assert_eq!((view.status, view.position), (TokenStatus::Waiting, 5));
}

// ---- authorize ---------------------------------------------------------------------------------

#[test]
fn authorize_rejects_malformed_and_unknown_tokens_as_invalid() {
    let mut w = World::new();
    w.queue.expect_find().with(eq(value())).times(1).returning(|_| Ok(None));
    let app = w.app();
    assert_eq!(app.authorize("Bearer x"), Err(AuthorizeError::Invalid));
    assert_eq!(app.authorize(&value().as_str().to_uppercase()), Err(AuthorizeError::Invalid));
    assert_eq!(app.authorize(value().as_str()), Err(AuthorizeError::Invalid));
}

#[test]
fn authorize_admits_an_active_token_until_one_microsecond_before_its_expiry() {
    let who = user();
    let token = active(who, t0() + Duration::microseconds(1));
    let app = World::new().with_token(token.clone()).app();
    let active_user = app.authorize(value().as_str()).unwrap();
    assert_eq!((active_user.user_id(), active_user.token()), (who, &token));

    let app = World::new().with_token(active(who, t0())).app();
    assert_eq!(app.authorize(value().as_str()), Err(AuthorizeError::Expired), "at the exact expiry");
}

#[test]
fn authorize_refuses_waiting_and_expired_tokens_and_reports_store_errors() {
    let who = user();
    let app = World::new().with_token(waiting(who, 3)).app();
    assert_eq!(app.authorize(value().as_str()), Err(AuthorizeError::NotActive));

    let used = QueueToken { status: TokenStatus::Expired, ..active(who, t0() + secs(100)) };
    let app = World::new().with_token(used).app();
    assert_eq!(app.authorize(value().as_str()), Err(AuthorizeError::Expired), "used up by a payment");

    let mut w = World::new();
    w.queue.expect_find().returning(|_| Err(down()));
    assert_eq!(w.app().authorize(value().as_str()), Err(AuthorizeError::Store(down())));
}

// ---- 3: admission and sweeps ---------------------------------------------------------------------

#[test]
fn paused_admission_makes_no_queue_store_call() {
    // The queue mock has no expectation: any call would fail the test.
    let w = World::new().with_settings(QueueSettings { paused: true, ..settings(100) });
    assert_eq!(w.app().admit(), Ok(AdmissionOutcome::Paused));
}

#[test]
fn admission_passes_the_settings_in_force_and_returns_the_stores_outcome() {
    let live = QueueSettings {
        paused: false,
        admission: AdmissionPolicy {
            batch: 7,
            interval: secs(5),
            active_ttl: secs(30),
            max_active: Some(9),
            abandon_after: None,
        },
    };
    let mut w = World::new().with_settings(live);
    w.queue.expect_admit().with(eq(live.admission)).times(1).returning(|_| Ok(AdmissionOutcome::Admitted(7)));
    assert_eq!(w.app().admit(), Ok(AdmissionOutcome::Admitted(7)));

    let mut w = World::new().with_settings(live);
    let wait = Duration::milliseconds(1_500);
    w.queue.expect_admit().returning(move |_| Ok(AdmissionOutcome::NotDue { wait }));
    assert_eq!(w.app().admit(), Ok(AdmissionOutcome::NotDue { wait }));

    let mut w = World::new().with_settings(live);
    w.queue.expect_admit().returning(|_| Err(down()));
    assert_eq!(w.app().admit(), Err(down()));

    let mut w = World::new();
    w.settings.expect_load().returning(|| Err(down()));
    assert_eq!(w.app().admit(), Err(down()), "no admission without the settings");
}

#[test]
fn a_sweep_runs_batches_until_one_comes_back_short() {
    let calls = Arc::new(AtomicUsize::new(0));
    let mut w = World::new();
    w.policy = Policy { sweep_batch: 10, sweep_batches_per_tick: 5, ..Policy::default() };
    let next = batches(&[10, 10, 3, 10], &calls);
    w.queue.expect_expire_tokens().with(eq(10)).returning(move |_| next());
    assert_eq!(w.app().expire_tokens(), Ok(23));
    assert_eq!(calls.load(Ordering::SeqCst), 3);
}

#[test]
fn a_sweep_stops_after_the_batches_per_tick() {
    let calls = Arc::new(AtomicUsize::new(0));
    let mut w = World::new();
    w.policy = Policy { sweep_batch: 10, sweep_batches_per_tick: 2, ..Policy::default() };
    let next = batches(&[10, 10, 10], &calls);
    w.reservations.expect_release_lapsed().with(eq(t0()), eq(10)).returning(move |_, _| next());
    assert_eq!(w.app().release_holds(), Ok(20));
    assert_eq!(calls.load(Ordering::SeqCst), 2, "the rest waits for the next tick");
}

#[test]
fn an_empty_first_batch_ends_the_sweep_and_zero_settings_mean_one() {
    let calls = Arc::new(AtomicUsize::new(0));
    let mut w = World::new();
    let next = batches(&[], &calls);
    w.idempotency.expect_purge_expired().with(eq(t0()), eq(1_000)).returning(move |_, _| next());
    assert_eq!(w.app().purge_idempotency_keys(), Ok(0));
    assert_eq!(calls.load(Ordering::SeqCst), 1);

    let calls = Arc::new(AtomicUsize::new(0));
    let mut w = World::new();
    w.policy = Policy { sweep_batch: 0, sweep_batches_per_tick: 0, ..Policy::default() };
    let next = batches(&[1, 1], &calls);
    w.queue.expect_expire_tokens().with(eq(1)).returning(move |_| next());
    assert_eq!(w.app().expire_tokens(), Ok(1));
    assert_eq!(calls.load(Ordering::SeqCst), 1);
}

#[test]
fn a_failing_batch_fails_the_sweep() {
    let calls = Arc::new(AtomicUsize::new(0));
    let mut w = World::new();
    w.policy = Policy { sweep_batch: 2, ..Policy::default() };
    let counted = calls.clone();
    w.queue.expect_expire_tokens().returning(move |_| {
        if counted.fetch_add(1, Ordering::SeqCst) == 0 {
            Ok(2)
        } else {
            Err(down())
        }
    });
    assert_eq!(w.app().expire_tokens(), Err(down()));
}

#[test]
fn a_tick_runs_every_part_and_reports_what_each_did() {
    let mut w = World::new().with_settings(settings(100));
    w.queue.expect_admit().returning(|_| Ok(AdmissionOutcome::Admitted(3)));
    w.queue.expect_expire_tokens().returning(|_| Ok(4));
    w.reservations.expect_release_lapsed().returning(|_, _| Ok(5));
    w.idempotency.expect_purge_expired().returning(|_, _| Ok(6));
    let report = w.app().tick().unwrap();
    assert_eq!(
        report,
        TickReport { admission: AdmissionOutcome::Admitted(3), tokens_expired: 4, holds_released: 5, keys_purged: 6 }
    );
}

#[test]
fn a_tick_runs_every_part_even_after_a_failure_and_returns_the_first_error() {
    let mut w = World::new();
    w.settings.expect_load().returning(|| Err(down()));
    w.queue.expect_expire_tokens().times(1).returning(|_| Ok(0));
    w.reservations.expect_release_lapsed().times(1).returning(|_, _| Err(StoreError::Timeout("lock".into())));
    w.idempotency.expect_purge_expired().times(1).returning(|_, _| Ok(0));
    assert_eq!(w.app().tick(), Err(down()));
}
