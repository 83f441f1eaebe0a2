//! Start-up and operations: database creation, migrations, seeding, readiness, and failing
//! fast (then recovering) when the database is unreachable.

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

use adapters_postgres::testing::{server_url, TestDatabase};
use adapters_postgres::{ensure_database, PgConfig, PgStore};
use common::assert_consistent;
use domain::clock::{Clock, ManualClock};
use domain::demo;
use domain::ids::{LedgerEntryId, UserId};
use domain::money::Won;
use domain::ports::StoreError;
use domain::queue::OsTokenGenerator;

#[test]
fn ensure_database_creates_a_missing_database_once_and_migrations_apply_once() {
    let name = format!("concert_test_{}_{}_ensure", std::process::id(), unix_secs());
    let url = format!("{}/{name}", server_url());
    ensure_database(&url).unwrap();
    ensure_database(&url).unwrap();
    let store = PgStore::connect(&PgConfig::new(&url)).unwrap();
    let first = store.run_migrations().unwrap();
    assert!(!first.is_empty());
    assert!(store.run_migrations().unwrap().is_empty(), "second run applies nothing");
    store.ping().unwrap();
    assert_consistent(&store);
    drop(store);
    drop_db(&name);
}

#[test]
fn migrations_run_concurrently_from_several_instances_apply_once() {
    let name = format!("concert_test_{}_{}_migrate", std::process::id(), unix_secs());
    let url = format!("{}/{name}", server_url());
    ensure_database(&url).unwrap();
    let applied: Vec<Vec<String>> = thread::scope(|s| {
        let hs: Vec<_> = (0..3)
            .map(|_| {
                let url = url.clone();
                s.spawn(move || PgStore::connect(&PgConfig::new(url)).unwrap().run_migrations().unwrap())
            })
            .collect();
        hs.into_iter().map(|h| h.join().unwrap()).collect()
    });
    assert_eq!(applied.iter().filter(|v| !v.is_empty()).count(), 1, "{applied:?}");
    drop_db(&name);
}

#[test]
fn seeding_is_idempotent() {
    let db = TestDatabase::create().unwrap();
    let store = db.store().unwrap();
    let clock = ManualClock::at_epoch();
    assert!(store.seed(&demo::catalogue(clock.now())).unwrap());
    // A later seed computes other dates but the same ids: nothing new.
    assert!(!store.seed(&demo::catalogue(clock.now() + time::Duration::days(3))).unwrap());
    let ports = store.ports(Arc::new(clock.clone()), Arc::new(OsTokenGenerator));
    assert_eq!(ports.catalogue.concerts().unwrap().len(), demo::catalogue(clock.now()).concerts.len());
    let schedules = ports.catalogue.schedules(demo::first_concert_id(), clock.now()).unwrap().unwrap();
    assert_eq!(schedules.len(), 3);
    assert!(schedules.iter().all(|s| s.total_seats == 50 && s.available_seats == 50));
}

#[test]
fn an_unreachable_database_is_unavailable_within_five_seconds() {
    // Port 1 on loopback: nothing listens, every connection attempt is refused.
    let cfg =
        PgConfig { connect_timeout: Duration::from_secs(1), ..PgConfig::new("postgres://postgres@127.0.0.1:1/x") };
    let started = Instant::now();
    let store = PgStore::connect(&cfg).unwrap();
    assert!(matches!(store.ping(), Err(StoreError::Unavailable(_))));
    let ports = store.ports(Arc::new(ManualClock::at_epoch()), Arc::new(OsTokenGenerator));
    assert!(matches!(ports.accounts.balance(UserId::random()), Err(StoreError::Unavailable(_))));
    assert!(matches!(ports.queue.cursor(), Err(StoreError::Unavailable(_))));
    assert!(started.elapsed() < Duration::from_secs(5), "took {:?}", started.elapsed());
}

#[test]
fn a_statement_stuck_behind_a_lock_is_cut_off_by_the_statement_timeout() {
    use diesel::{Connection as _, RunQueryDsl as _};
    let db = TestDatabase::create().unwrap();
    let store = PgStore::connect(&PgConfig { statement_timeout: Duration::from_millis(200), ..db.config() }).unwrap();
    let clock = ManualClock::at_epoch();
    let ports = store.ports(Arc::new(clock.clone()), Arc::new(OsTokenGenerator));
    let user = UserId::random();
    let limit = domain::money::BALANCE_LIMIT;
    let credit = || ports.accounts.credit(user, Won::new(10), limit, LedgerEntryId::random(), clock.now());
    credit().unwrap();
    let mut locker = diesel::PgConnection::establish(&db.url()).unwrap();
    locker
        .transaction(|c| {
            diesel::sql_query("SELECT 1 FROM accounts WHERE user_id = $1 FOR UPDATE")
                .bind::<diesel::sql_types::Uuid, _>(user.as_uuid())
                .execute(c)?;
            let started = Instant::now();
            assert!(matches!(credit(), Err(StoreError::Unavailable(_))));
            assert!(started.elapsed() < Duration::from_secs(2), "took {:?}", started.elapsed());
            diesel::QueryResult::Ok(())
        })
        .unwrap();
    // Nothing was half-done, and the pool is still usable.
    assert_eq!(ports.accounts.balance(user).unwrap(), Won::new(10));
    credit().unwrap();
    assert_consistent(&store);
}

#[test]
fn the_pool_recovers_by_itself_when_the_database_comes_back() {
    let db = TestDatabase::create().unwrap();
    let proxy = Proxy::start(5432);
    let url = format!("postgres://postgres@127.0.0.1:{}/{}", proxy.port, db.name());
    let cfg = PgConfig { pool_size: 4, connect_timeout: Duration::from_secs(1), ..PgConfig::new(url) };
    let store = PgStore::connect(&cfg).unwrap();
    store.ping().unwrap();

    proxy.set_up(false);
    let started = Instant::now();
    assert!(matches!(store.ping(), Err(StoreError::Unavailable(_))));
    assert!(started.elapsed() < Duration::from_secs(5), "took {:?}", started.elapsed());

    proxy.set_up(true);
    let deadline = Instant::now() + Duration::from_secs(10);
    while store.ping().is_err() {
        assert!(Instant::now() < deadline, "pool did not recover");
        thread::sleep(Duration::from_millis(100));
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
    let cfg = PgConfig { pool_size: POOL, connect_timeout: Duration::from_secs(2), ..PgConfig::new(url) };
    let store = PgStore::connect(&cfg).unwrap();
    let clock = ManualClock::at_epoch();
    let ports = store.ports(Arc::new(clock.clone()), Arc::new(OsTokenGenerator));
    let user = UserId::random();
    store.open_connections(POOL).unwrap();
    assert_eq!(ports.accounts.balance(user).unwrap(), Won::new(0));

    // The server side of every pooled connection goes away; new connections work at once.
    proxy.set_up(false);
    proxy.set_up(true);
    let outcomes: Vec<_> = (0..3 * POOL).map(|_| ports.accounts.balance(user)).collect();
    let failed = outcomes.iter().filter(|r| r.is_err()).count();
    assert!(failed <= POOL as usize, "{failed} calls failed: {outcomes:?}");
    assert!(
        outcomes.iter().all(|r| r.is_ok() || matches!(r, Err(StoreError::Unavailable(_)))),
        "a dead connection reads as unavailable: {outcomes:?}"
    );
    let last_failure = outcomes.iter().rposition(Result::is_err).map_or(0, |i| i + 1);
    assert!(outcomes[last_failure..].iter().all(Result::is_ok));
    assert!(outcomes.len() - last_failure >= 2 * POOL as usize, "{outcomes:?}");
    // Writes work again too.
    ports.accounts.credit(user, Won::new(5), Won::new(100), LedgerEntryId::random(), clock.now()).unwrap();
    drop(ports);
    drop(store);
    proxy.stop();
}

fn unix_secs() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs()
}

fn drop_db(name: &str) {
    use diesel::{Connection as _, RunQueryDsl as _};
    let mut admin = diesel::PgConnection::establish(&format!("{}/postgres", server_url())).unwrap();
    diesel::sql_query(format!("DROP DATABASE IF EXISTS \"{name}\" WITH (FORCE)")).execute(&mut admin).unwrap();
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

#[test]
fn close_waits_for_the_other_handles_then_closes_the_pool_here() {
    let db = TestDatabase::create().unwrap();
    let store = db.store().unwrap();
    store.ping().unwrap();
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
