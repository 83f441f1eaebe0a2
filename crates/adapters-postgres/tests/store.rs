//! Start-up and operations: database creation, migrations, and how calls fail and recover
//! when the database is unreachable, a row stays locked, a connection is terminated, a
//! statement runs too long, or a call's time budget runs out before COMMIT. Every failure must
//! be classified (`Unavailable`, `Timeout`) and must have committed nothing.
//!
//! The time bounds asserted here are the contract's (an answer within 5 s), never a measure of
//! speed; each failure is provoked by an observed event (a backend seen waiting on a lock, a
//! backend terminated), not by a sleep that hopes for one.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    reason = "test code: a failed expectation must fail the test"
)]

mod common;

use std::io::{Read as _, Write as _};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use adapters_local::OsRandom;
use adapters_postgres::testing::{server_url, TestDatabase};
use adapters_postgres::{ensure_database, PgConfig, PgStore};
use common::{assert_consistent, Postgres};
use diesel::connection::SimpleConnection as _;
use diesel::prelude::*;
use diesel::sql_types::{Bool, Integer, Text, Uuid as SqlUuid};
use domain::account::{CreditOutcome, CreditRequest};
use domain::clock::{Clock, ManualClock};
use domain::error::{PayError, ReserveError};
use domain::idempotency::{Claimed, Fingerprint, IdempotencyKey};
use domain::ids::{LedgerEntryId, UserId};
use domain::money::{Won, BALANCE_LIMIT};
use domain::ports::StoreError;
use domain::queue::{SettingsChange, SettingsPatch};
use domain::random::Randomness as _;
use domain::service::{Policy, Ports, Ticketing};
use port_tests::fixture::{guard, Fixture};
use uuid::Uuid;

/// The contract's bound on answering "unavailable".
const CONTRACT: Duration = Duration::from_secs(5);

fn unix_secs() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs()
}

fn drop_db(name: &str) {
    let mut admin = PgConnection::establish(&format!("{}/postgres", server_url())).unwrap();
    diesel::sql_query(format!("DROP DATABASE IF EXISTS \"{name}\" WITH (FORCE)")).execute(&mut admin).unwrap();
}

fn ports(store: &PgStore, clock: &ManualClock) -> Ports {
    store.ports(Arc::new(clock.clone()), Arc::new(OsRandom))
}

fn credit_request(user: UserId, amount: i64, clock: &ManualClock) -> CreditRequest {
    CreditRequest {
        user,
        amount: Won::new(amount),
        limit: BALANCE_LIMIT,
        entry: LedgerEntryId::from_uuid(Uuid::new_v4()),
        at: clock.now(),
    }
}

/// Holds the account row of `user` locked (FOR UPDATE) in a transaction on a connection of its
/// own until `release` returns; `release` gets a connection to observe the server with.
fn with_account_locked<T>(db: &TestDatabase, user: UserId, release: impl FnOnce(&mut PgConnection) -> T) -> T {
    let mut locker = PgConnection::establish(&db.url()).unwrap();
    let mut observer = PgConnection::establish(&db.url()).unwrap();
    locker
        .transaction(|c| {
            diesel::sql_query("SELECT 1 FROM accounts WHERE user_id = $1 FOR UPDATE")
                .bind::<SqlUuid, _>(user.as_uuid())
                .execute(c)?;
            QueryResult::Ok(release(&mut observer))
        })
        .unwrap()
}

#[derive(QueryableByName)]
struct Flag {
    #[diesel(sql_type = Bool)]
    flag: bool,
}

/// Waits until some backend of `db` waits for a lock (the store's call is blocked), checking
/// the server instead of sleeping a guessed time.
fn await_lock_wait(observer: &mut PgConnection, db: &TestDatabase) {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let waiting: Flag = diesel::sql_query(
            "SELECT EXISTS (SELECT 1 FROM pg_stat_activity WHERE datname = $1 AND wait_event_type = 'Lock') AS flag",
        )
        .bind::<Text, _>(db.name())
        .get_result(observer)
        .unwrap();
        if waiting.flag {
            return;
        }
        assert!(Instant::now() < deadline, "the call never waited for the lock");
        thread::sleep(Duration::from_millis(5));
    }
}

// ---- start-up ------------------------------------------------------------------------------

#[test]
fn ensure_database_creates_a_missing_database_once_even_with_an_encoded_name() {
    // `%20` in the URL is a space in the name: the URL is percent-decoded.
    let name = format!("concert_test_{}_{}_ensure me", std::process::id(), unix_secs());
    let cfg = PgConfig::new(format!("{}/{}", server_url(), name.replace(' ', "%20")));
    ensure_database(&cfg).unwrap();
    ensure_database(&cfg).unwrap();
    let store = PgStore::new(&cfg).unwrap();
    assert!(!store.run_migrations().unwrap().is_empty());
    assert!(store.run_migrations().unwrap().is_empty(), "a second run applies nothing");
    store.ping().unwrap();
    assert_consistent(&store);
    drop(store);
    drop_db(&name);
}

#[test]
fn migrations_run_concurrently_from_several_instances_apply_once() {
    let name = format!("concert_test_{}_{}_migrate", std::process::id(), unix_secs());
    let cfg = PgConfig::new(format!("{}/{name}", server_url()));
    ensure_database(&cfg).unwrap();
    let applied: Vec<Vec<String>> = thread::scope(|s| {
        let hs: Vec<_> = (0..3).map(|_| s.spawn(|| PgStore::new(&cfg).unwrap().run_migrations().unwrap())).collect();
        hs.into_iter().map(|h| h.join().unwrap()).collect()
    });
    assert_eq!(applied.iter().filter(|v| !v.is_empty()).count(), 1, "{applied:?}");
    drop_db(&name);
}

/// The migration to admission ranges keeps every token reading as it did: tokens admitted
/// before it stay stored ACTIVE or EXPIRED, a skip still reads ABANDONED, the cursor's gaps
/// between skips become ranges (so every place the cursor passed is in one), and the next tick
/// records its range after them. Reverting it writes the tokens a range admitted ACTIVE.
#[test]
fn the_migration_to_admission_ranges_keeps_every_token_as_it_read() {
    use diesel_migrations::MigrationHarness as _;
    use domain::ports::QueueStore as _;
    use domain::queue::{AdmissionOutcome, AdmissionPolicy, ExpiredReason, TokenStatus, TokenValue};
    use domain::room::RoomId;

    // Reverts the migrations down to and including the one to admission ranges (later ones
    // come off first).
    fn revert_ranges(conn: &mut PgConnection) {
        loop {
            let version = conn.revert_last_migration(adapters_postgres::MIGRATIONS).unwrap().to_string();
            if version.replace('-', "").starts_with("20261209") {
                return;
            }
        }
    }
    let db = TestDatabase::create().unwrap();
    let mut conn = PgConnection::establish(&db.url()).unwrap();
    revert_ranges(&mut conn);
    // Before: `main` admitted 1..=3 (stored ACTIVE, 2 paid since), 4 waits; room `tour`'s
    // tick skipped 1..=2 (stored WAITING) and admitted 3 (stored ACTIVE), 4 waits.
    conn.batch_execute(
        "INSERT INTO queue_tokens (room, seq, token, user_id, status, issued_at, activated_at, expires_at, \
           expired_reason) \
         SELECT r, g, CASE WHEN r = 'main' THEN '' ELSE r || '.' END || lpad(to_hex(g + o), 64, '0'), \
           lpad(to_hex(g + o), 32, '0')::uuid, \
           CASE WHEN r = 'main' AND g = 2 THEN 'EXPIRED' WHEN (r = 'main' AND g <= 3) OR (r = 'tour' AND g = 3) \
             THEN 'ACTIVE' ELSE 'WAITING' END, \
           '2026-01-01Z', CASE WHEN (r = 'main' AND g <= 3) OR (r = 'tour' AND g = 3) THEN timestamptz '2026-01-01 00:01Z' END, \
           CASE WHEN (r = 'main' AND g <= 3) OR (r = 'tour' AND g = 3) THEN timestamptz '2100-01-01Z' END, \
           CASE WHEN r = 'main' AND g = 2 THEN 'PAID' END \
         FROM (VALUES ('main', 0), ('tour', 100)) AS l (r, o), generate_series(1, 4) g; \
         UPDATE queue_admission SET admitted_through = 3, last_admission_at = '2026-01-01 00:01Z' WHERE room = 'main'; \
         INSERT INTO queue_admission (room, admitted_through, last_admission_at, abandoned) \
           VALUES ('tour', 3, '2026-01-01 00:01Z', 2); \
         INSERT INTO queue_skips (room, after, through, at) VALUES ('tour', 0, 3, '2026-01-01 00:01Z');",
    )
    .unwrap();
    conn.run_pending_migrations(adapters_postgres::MIGRATIONS).unwrap();
    let store = db.store().unwrap();
    let tour = RoomId::parse("tour").unwrap();
    let main_token = |n: u64| TokenValue::parse(&format!("{n:064x}")).unwrap();
    let tour_token = |n: u64| main_token(n + 100).in_room(&tour);
    let at = |s: &str| time::OffsetDateTime::parse(s, &time::format_description::well_known::Rfc3339).unwrap();
    let (admitted_at, ttl_end) = (at("2026-01-01T00:01:00Z"), at("2100-01-01T00:00:00Z"));
    let read = |t: domain::queue::QueueToken| (t.seq, t.status, t.activated_at, t.expires_at, t.expired_reason);
    let main: Vec<_> = (1..=4).map(|n| read(store.find(&main_token(n)).unwrap().unwrap())).collect();
    let active = |seq| (seq, TokenStatus::Active, Some(admitted_at), Some(ttl_end), None);
    let waiting = (4, TokenStatus::Waiting, None, None, None);
    let paid = (2, TokenStatus::Expired, Some(admitted_at), Some(ttl_end), Some(ExpiredReason::Paid));
    assert_eq!(main, [active(1), paid, active(3), waiting]);
    let rooms: Vec<_> = (1..=4).map(|n| read(store.line(&tour).find(&tour_token(n)).unwrap().unwrap())).collect();
    let skipped = |seq| (seq, TokenStatus::Expired, None, Some(admitted_at), Some(ExpiredReason::Abandoned));
    assert_eq!(rooms, [skipped(1), skipped(2), active(3), waiting]);
    #[derive(QueryableByName)]
    struct Range {
        #[diesel(sql_type = Text)]
        range: String,
    }
    let ranges: Vec<String> = diesel::sql_query(
        "SELECT room || ' (' || after || ', ' || through || '] ' || (expires_at IS NULL)::text AS range \
         FROM queue_admission_ranges ORDER BY room, through",
    )
    .load::<Range>(&mut conn)
    .unwrap()
    .into_iter()
    .map(|r| r.range)
    .collect();
    assert_eq!(ranges, ["main (0, 3] false", "tour (0, 3] true"]);
    assert_consistent(&store);

    // The next tick of `main` admits token 4 by a range after the migrated one.
    let policy = AdmissionPolicy { batch: 5, ..AdmissionPolicy::default() };
    assert_eq!(store.admit(&policy).unwrap(), AdmissionOutcome::Admitted(1));
    let admitted = store.find(&main_token(4)).unwrap().unwrap();
    assert_eq!(admitted.status, TokenStatus::Active);
    assert_consistent(&store);

    // Back: the token a range admitted is written as it read (the store's statements need the
    // ranges, so this reads the rows), and forth again.
    revert_ranges(&mut conn);
    #[derive(QueryableByName)]
    struct Row {
        #[diesel(sql_type = Text)]
        status: String,
        #[diesel(sql_type = diesel::sql_types::Nullable<diesel::sql_types::Timestamptz>)]
        activated_at: Option<time::OffsetDateTime>,
        #[diesel(sql_type = diesel::sql_types::Nullable<diesel::sql_types::Timestamptz>)]
        expires_at: Option<time::OffsetDateTime>,
    }
    let row: Row =
        diesel::sql_query("SELECT status, activated_at, expires_at FROM queue_tokens WHERE room = 'main' AND seq = 4")
            .get_result(&mut conn)
            .unwrap();
    assert_eq!(
        (row.status.as_str(), row.activated_at, row.expires_at),
        ("ACTIVE", admitted.activated_at, admitted.expires_at)
    );
    conn.run_pending_migrations(adapters_postgres::MIGRATIONS).unwrap();
    assert_eq!(store.find(&main_token(4)).unwrap().unwrap(), admitted);
    assert_consistent(&store);
}

#[test]
fn a_store_is_built_without_connecting_and_refuses_an_unusable_url() {
    assert!(PgStore::new(&PgConfig::new("postgres://127.0.0.1:1/nowhere")).is_ok(), "lazy: nothing connects");
    assert!(PgStore::new(&PgConfig::new("postgres://127.0.0.1:5432")).is_err(), "no database named");
    assert!(PgStore::new(&PgConfig::new("http://127.0.0.1/x")).is_err());
}

// ---- the database unreachable --------------------------------------------------------------

#[test]
fn an_unreachable_database_is_unavailable_within_the_contracts_bound() {
    // Port 1 on loopback: nothing listens, every connection attempt is refused.
    let store = PgStore::new(&PgConfig::new("postgres://postgres@127.0.0.1:1/x")).unwrap();
    let clock = ManualClock::at_epoch();
    let ports = ports(&store, &clock);
    let started = Instant::now();
    assert!(matches!(store.ping(), Err(StoreError::Unavailable(_))));
    assert!(matches!(ports.accounts.balance(UserId::from_uuid(Uuid::new_v4())), Err(StoreError::Unavailable(_))));
    assert!(matches!(
        ports.queue.issue(UserId::from_uuid(Uuid::new_v4()), OsRandom.token(), clock.now()),
        Err(StoreError::Unavailable(_))
    ));
    assert!(started.elapsed() < CONTRACT * 3, "three calls took {:?}", started.elapsed());
}

#[test]
fn the_pool_recovers_by_itself_when_the_database_comes_back() {
    let db = TestDatabase::create().unwrap();
    let proxy = Proxy::start(5432);
    let cfg = PgConfig {
        pool_size: 4,
        ..PgConfig::new(format!("postgres://postgres@127.0.0.1:{}/{}", proxy.port, db.name()))
    };
    let store = PgStore::new(&cfg).unwrap();
    store.ping().unwrap();

    proxy.set_up(false);
    let started = Instant::now();
    assert!(matches!(store.ping(), Err(StoreError::Unavailable(_))));
    assert!(started.elapsed() < CONTRACT, "took {:?}", started.elapsed());

    proxy.set_up(true);
    let deadline = Instant::now() + Duration::from_secs(10);
    while store.ping().is_err() {
        assert!(Instant::now() < deadline, "pool did not recover");
        thread::sleep(Duration::from_millis(50));
    }
    drop(store);
    proxy.stop();
}

#[test]
fn a_dead_connection_fails_at_most_one_call_then_leaves_the_pool() {
    // No ping on checkout: a connection whose socket died is only found out by the statement
    // that uses it, which must retire it so the next call gets a fresh one.
    const POOL: u32 = 4;
    let db = TestDatabase::create().unwrap();
    let proxy = Proxy::start(5432);
    let url = format!("postgres://postgres@127.0.0.1:{}/{}", proxy.port, db.name());
    let store = PgStore::new(&PgConfig { pool_size: POOL, ..PgConfig::new(url) }).unwrap();
    let clock = ManualClock::at_epoch();
    let ports = ports(&store, &clock);
    let user = UserId::from_uuid(Uuid::new_v4());
    store.open_connections(POOL).unwrap();

    // The server side of every pooled connection goes away; new connections work at once.
    proxy.set_up(false);
    proxy.set_up(true);
    let outcomes: Vec<_> = (0..3 * POOL).map(|_| ports.accounts.balance(user)).collect();
    assert_recovers_after_at_most(&outcomes, POOL);
    ports.accounts.credit(&credit_request(user, 5, &clock), None).unwrap();
    drop(ports);
    drop(store);
    proxy.stop();
}

/// At most `pool` calls failed, each as `Unavailable`, and every call after the last failure
/// (at least two pools' worth) succeeded.
fn assert_recovers_after_at_most<T: std::fmt::Debug>(outcomes: &[Result<T, StoreError>], pool: u32) {
    let failed = outcomes.iter().filter(|r| r.is_err()).count();
    assert!(failed <= pool as usize, "{failed} calls failed: {outcomes:?}");
    assert!(
        outcomes.iter().all(|r| r.is_ok() || matches!(r, Err(StoreError::Unavailable(_)))),
        "a lost connection reads as unavailable: {outcomes:?}"
    );
    let after = outcomes.iter().rposition(Result::is_err).map_or(0, |i| i + 1);
    assert!(outcomes.len() - after >= 2 * pool as usize, "{outcomes:?}");
}

#[test]
fn a_terminated_backend_fails_one_call_then_the_pool_recovers() {
    const POOL: u32 = 4;
    let db = TestDatabase::create().unwrap();
    let store = PgStore::new(&PgConfig { pool_size: POOL, ..db.config() }).unwrap();
    let clock = ManualClock::at_epoch();
    let ports = ports(&store, &clock);
    let user = UserId::from_uuid(Uuid::new_v4());
    store.open_connections(POOL).unwrap();
    let mut admin = PgConnection::establish(&format!("{}/postgres", server_url())).unwrap();
    #[derive(QueryableByName)]
    struct Terminated {
        #[diesel(sql_type = Integer)]
        n: i32,
    }
    let terminated: Terminated = diesel::sql_query(
        "SELECT count(*)::int AS n FROM (SELECT pg_terminate_backend(pid) FROM pg_stat_activity \
         WHERE datname = $1 AND application_name = 'concert') t",
    )
    .bind::<Text, _>(db.name())
    .get_result(&mut admin)
    .unwrap();
    assert_eq!(terminated.n, i32::try_from(POOL).unwrap(), "every pooled connection was open");
    let outcomes: Vec<_> = (0..3 * POOL).map(|_| ports.accounts.balance(user)).collect();
    assert_recovers_after_at_most(&outcomes, POOL);
    // A transaction works again too.
    let key = IdempotencyKey::parse("after-terminate").unwrap();
    let fp = Fingerprint::charge(user, Won::new(5));
    let guard = guard(user, &key, &fp, clock.now(), time::Duration::days(1));
    let credited = ports.accounts.credit(&credit_request(user, 5, &clock), Some(&guard)).unwrap();
    assert_eq!(credited, Claimed::Done(CreditOutcome::Credited(Won::new(5))));
    assert_consistent(&store);
}

// ---- waits that give up ----------------------------------------------------------------------

#[test]
fn a_call_blocked_by_a_locked_row_times_out_and_the_rest_of_the_pool_keeps_serving() {
    let db = TestDatabase::create().unwrap();
    let store = PgStore::new(&PgConfig { pool_size: 4, ..db.config() }).unwrap();
    let clock = ManualClock::at_epoch();
    let ports = ports(&store, &clock);
    let (user, other) = (UserId::from_uuid(Uuid::new_v4()), UserId::from_uuid(Uuid::new_v4()));
    ports.accounts.credit(&credit_request(user, 10, &clock), None).unwrap();
    with_account_locked(&db, user, |_| {
        let started = Instant::now();
        let blocked = ports.accounts.credit(&credit_request(user, 10, &clock), None);
        assert!(matches!(blocked, Err(StoreError::Timeout(_))), "{blocked:?}");
        assert!(started.elapsed() < CONTRACT, "took {:?}", started.elapsed());
        // The lock holds one row, not the pool: other users are served meanwhile.
        for _ in 0..8 {
            ports.accounts.credit(&credit_request(other, 1, &clock), None).unwrap();
        }
    });
    assert_eq!(ports.accounts.balance(user).unwrap(), Won::new(10), "the timed-out charge changed nothing");
    assert_eq!(ports.accounts.balance(other).unwrap(), Won::new(8));
    ports.accounts.credit(&credit_request(user, 10, &clock), None).unwrap();
    assert_consistent(&store);
}

#[test]
fn a_statement_cut_off_by_the_statement_timeout_is_a_timeout() {
    let db = TestDatabase::create().unwrap();
    // Lock waits longer than statements: the statement timeout fires first.
    let cfg = PgConfig {
        lock_timeout: Duration::from_secs(20),
        statement_timeout: Duration::from_millis(300),
        ..db.config()
    };
    let store = PgStore::new(&cfg).unwrap();
    let clock = ManualClock::at_epoch();
    let ports = ports(&store, &clock);
    let user = UserId::from_uuid(Uuid::new_v4());
    ports.accounts.credit(&credit_request(user, 10, &clock), None).unwrap();
    with_account_locked(&db, user, |_| {
        let blocked = ports.accounts.credit(&credit_request(user, 10, &clock), None);
        assert!(matches!(blocked, Err(StoreError::Timeout(_))), "{blocked:?}");
    });
    assert_eq!(ports.accounts.balance(user).unwrap(), Won::new(10));
    ports.accounts.credit(&credit_request(user, 10, &clock), None).unwrap();
    assert_consistent(&store);
}

/// A keyed charge waits for a locked account; the lock is released only after the call has
/// run past its budget, so its statements then succeed, but it must not COMMIT: it rolls back,
/// answers `Timeout`, and neither the credit nor the record exists afterwards.
#[test]
fn a_transaction_past_its_budget_rolls_back_instead_of_committing_late() {
    let db = TestDatabase::create().unwrap();
    let budget = Duration::from_millis(300);
    let cfg = PgConfig {
        lock_timeout: Duration::from_secs(20),
        statement_timeout: Duration::from_secs(30),
        call_budget: budget,
        ..db.config()
    };
    let store = PgStore::new(&cfg).unwrap();
    let clock = ManualClock::at_epoch();
    let ports = ports(&store, &clock);
    let user = UserId::from_uuid(Uuid::new_v4());
    ports.accounts.credit(&credit_request(user, 10, &clock), None).unwrap();
    let key = IdempotencyKey::parse("late").unwrap();
    let fp = Fingerprint::charge(user, Won::new(10));
    let guard = guard(user, &key, &fp, clock.now(), time::Duration::days(1));
    let outcome = thread::scope(|s| {
        with_account_locked(&db, user, |observer| {
            let call = s.spawn(|| ports.accounts.credit(&credit_request(user, 10, &clock), Some(&guard)));
            await_lock_wait(observer, &db);
            // The call is blocked inside its transaction; keep it there past its budget.
            thread::sleep(budget * 2);
            call
        })
        .join()
        .unwrap()
    });
    assert!(matches!(outcome, Err(StoreError::Timeout(_))), "{outcome:?}");
    assert_eq!(ports.accounts.balance(user).unwrap(), Won::new(10), "nothing was credited");
    assert_eq!(ports.idempotency.find(user, &key, clock.now()).unwrap(), None, "nothing was recorded");
    assert_consistent(&store);
}

/// With no budget at all, every transaction rolls back before COMMIT (keyed charge, issue,
/// admission, settings, hold, payment) and answers `Timeout`; a lone statement (an unkeyed
/// charge) is sent at once and commits.
#[test]
fn every_transaction_honours_the_budget() {
    let fx = Fixture::<Postgres>::seeded();
    let who = fx.active_user();
    fx.charge(who.user_id(), 1_000_000);
    let held = fx.hold(&who, 0, 1);
    let broke = PgStore::new(&PgConfig { call_budget: Duration::from_nanos(1), ..fx.harness.db.config() })
        .unwrap()
        .with_clock(Arc::new(fx.clock.clone()));
    let bad = Ports { clock: Arc::new(fx.clock.clone()), ..ports(&broke, &fx.clock) };
    let app = Ticketing::new(bad.clone(), Policy::default());
    let user = who.user_id();
    let before = fx.snapshot(&who, held.id);

    bad.accounts.credit(&credit_request(user, 10, &fx.clock), None).unwrap();
    let key = IdempotencyKey::parse("k").unwrap();
    let fp = Fingerprint::charge(user, Won::new(10));
    let guard = guard(user, &key, &fp, fx.now(), time::Duration::days(1));
    let timeout = |r: Result<_, StoreError>| matches!(r, Err(StoreError::Timeout(_)));
    assert!(timeout(bad.accounts.credit(&credit_request(user, 10, &fx.clock), Some(&guard)).map(|_| ())));
    assert!(timeout(bad.queue.issue(fx.user(), OsRandom.token(), fx.now()).map(|_| ())));
    assert!(timeout(bad.queue.admit(&domain::queue::AdmissionPolicy::default()).map(|_| ())));
    let patch = SettingsPatch::new(SettingsChange { paused: Some(true), ..SettingsChange::default() }).unwrap();
    assert!(timeout(bad.settings.update(&patch, None).map(|_| ())));
    let seat = fx.seat(0, 2);
    assert!(matches!(app.reserve(&who, fx.schedule(0).id, seat.id), Err(ReserveError::Store(StoreError::Timeout(_)))));
    assert!(matches!(app.pay(who.token().value.as_str(), held.id, None), Err(PayError::Store(StoreError::Timeout(_)))));

    let after = fx.snapshot(&who, held.id);
    assert_eq!(after.balance, before.balance.checked_add(Won::new(10)).unwrap(), "only the unkeyed charge");
    assert_eq!((after.reservation, after.token, after.seats), (before.reservation, before.token, before.seats));
    assert_eq!(fx.ports.idempotency.find(user, &key, fx.now()).unwrap(), None);
    assert_eq!(fx.ports.queue.stats().unwrap().issued_through, 1, "only the fixture's token");
    assert!(!fx.ports.settings.load().unwrap().paused);
    assert_consistent(&fx.harness.store);
}

/// A caller that gave up (the HTTP layer answered 503 past its deadline) is never committed for,
/// however late the call reaches its COMMIT; a caller that still waits is. Issue batches too.
#[test]
fn a_call_whose_caller_gave_up_never_commits() {
    let fx = Fixture::<Postgres>::seeded();
    let user = UserId::from_uuid(Uuid::new_v4());
    let gone = domain::call::CommitWatch::new();
    assert!(gone.abandon());
    let outcome = gone.attach(|| fx.ports.accounts.credit(&credit_request(user, 10, &fx.clock), None));
    assert!(matches!(outcome, Err(StoreError::Timeout(_))), "{outcome:?}");
    let issued = gone.attach(|| fx.ports.queue.issue(user, OsRandom.token(), fx.now()));
    assert!(matches!(issued, Err(StoreError::Timeout(_))), "{issued:?}");
    assert_eq!(fx.ports.accounts.balance(user).unwrap(), Won::ZERO, "nothing was credited");
    assert_eq!(fx.ports.queue.stats().unwrap().issued_through, 0, "nothing was issued");

    let waiting = domain::call::CommitWatch::new();
    let credited = waiting.attach(|| fx.ports.accounts.credit(&credit_request(user, 10, &fx.clock), None));
    assert!(matches!(credited, Ok(Claimed::Done(CreditOutcome::Credited(_)))), "{credited:?}");
    assert!(waiting.committing() && !waiting.abandon(), "once committing, the caller must wait for the outcome");
    assert_consistent(&fx.harness.store);
}

// ---- closing -------------------------------------------------------------------------------

#[test]
fn close_waits_for_the_other_handles_then_closes_the_pool_here() {
    let db = TestDatabase::create().unwrap();
    let store = db.store().unwrap();
    let clock = ManualClock::at_epoch();
    // The batcher thread is running, and holds the pool: close stops it too.
    ports(&store, &clock).queue.issue(UserId::from_uuid(Uuid::new_v4()), OsRandom.token(), clock.now()).unwrap();
    let other = store.clone();
    let holder = thread::spawn(move || {
        other.ping().unwrap();
        thread::sleep(Duration::from_millis(200));
        drop(other);
    });
    assert!(!store.clone().close(Duration::from_millis(1)), "a clone is still alive");
    assert!(store.close(Duration::from_secs(10)), "closes once the other clone is gone");
    holder.join().unwrap();
}

/// A TCP forwarder to PostgreSQL that can be switched off (existing connections cut, new ones
/// closed at once) to simulate an outage without touching the real server.
struct Proxy {
    port: u16,
    up: Arc<AtomicBool>,
    stop: Arc<AtomicBool>,
    open: Arc<Mutex<Vec<TcpStream>>>,
    accept: Option<thread::JoinHandle<()>>,
}

impl Proxy {
    fn start(target: u16) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        listener.set_nonblocking(true).unwrap();
        let port = listener.local_addr().unwrap().port();
        let up = Arc::new(AtomicBool::new(true));
        let stop = Arc::new(AtomicBool::new(false));
        let open = Arc::new(Mutex::new(Vec::new()));
        let accept = {
            let (up, stop, open) = (up.clone(), stop.clone(), open.clone());
            thread::spawn(move || {
                while !stop.load(Ordering::SeqCst) {
                    let Ok((client, _)) = listener.accept() else {
                        thread::sleep(Duration::from_millis(5));
                        continue;
                    };
                    if !up.load(Ordering::SeqCst) {
                        drop(client);
                        continue;
                    }
                    client.set_nonblocking(false).unwrap();
                    let Ok(server) = TcpStream::connect(("127.0.0.1", target)) else { continue };
                    open.lock().unwrap().extend([client.try_clone().unwrap(), server.try_clone().unwrap()]);
                    pipe(client.try_clone().unwrap(), server.try_clone().unwrap());
                    pipe(server, client);
                }
            })
        };
        Self { port, up, stop, open, accept: Some(accept) }
    }

    fn set_up(&self, up: bool) {
        self.up.store(up, Ordering::SeqCst);
        if !up {
            for s in self.open.lock().unwrap().drain(..) {
                let _ = s.shutdown(Shutdown::Both);
            }
        }
    }

    fn stop(mut self) {
        self.set_up(false);
        self.stop.store(true, Ordering::SeqCst);
        if let Some(h) = self.accept.take() {
            h.join().unwrap();
        }
    }
}

fn pipe(mut from: TcpStream, mut to: TcpStream) {
    thread::spawn(move || {
        let mut buf = [0_u8; 16 * 1024];
        loop {
            match from.read(&mut buf) {
                Ok(0) | Err(_) => break,
                Ok(n) => {
                    if to.write_all(&buf[..n]).is_err() {
                        break;
                    }
                }
            }
        }
        let _ = to.shutdown(Shutdown::Both);
        let _ = from.shutdown(Shutdown::Both);
    });
}
