//! What one request of each kind costs the adapter in conversation with PostgreSQL, and a
//! short throughput figure for the hottest ones.
//!
//! Part 1 counts, per operation, the round trips (client→server bursts), the statements
//! executed (`Execute` and simple `Query` messages) and the statements parsed (`Parse`
//! messages: a cached prepared statement is parsed once per connection, an unnamed one on
//! every execution). It runs the store through a counting TCP proxy with one pooled
//! connection and `sslmode=disable`, so the byte stream can be read as PostgreSQL's protocol.
//! Part 2 times the use cases from 8 threads over an 8-connection pool, directly.
//!
//! Not a test: `cargo bench -p adapters-postgres --bench roundtrips` (about 20 s; append
//! `-- --counts-only` for part 1 alone).

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::print_stdout,
    clippy::cast_precision_loss,
    reason = "a benchmark binary: failing loudly is the point"
)]

use std::io::{Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

use adapters_local::OsRandom;
use adapters_postgres::testing::TestDatabase;
use adapters_postgres::{PgConfig, PgStore};
use domain::catalogue::NewConcert;
use domain::clock::{Clock, ManualClock};
use domain::ids::UserId;
use domain::queue::{AdmissionOutcome, TokenStatus};
use domain::random::Randomness as _;
use domain::service::{ActiveUser, Policy, Ticketing};

/// Protocol message counts seen by the proxy.
#[derive(Default)]
struct Counts {
    bursts: AtomicU64,
    execs: AtomicU64,
    parses: AtomicU64,
}

impl Counts {
    fn take(&self) -> [u64; 3] {
        [
            self.bursts.swap(0, Ordering::SeqCst),
            self.execs.swap(0, Ordering::SeqCst),
            self.parses.swap(0, Ordering::SeqCst),
        ]
    }
}

/// Forwards to PostgreSQL and parses the client's side of the protocol.
fn proxy(counts: Arc<Counts>) -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    thread::spawn(move || {
        for client in listener.incoming() {
            let Ok(client) = client else { continue };
            let server = TcpStream::connect(("127.0.0.1", 5432)).unwrap();
            let (c2, s2) = (client.try_clone().unwrap(), server.try_clone().unwrap());
            let counts = counts.clone();
            thread::spawn(move || forward_counting(client, server, &counts));
            thread::spawn(move || forward(s2, c2));
        }
    });
    port
}

fn forward(mut from: TcpStream, mut to: TcpStream) {
    let mut buf = [0_u8; 64 * 1024];
    while let Ok(n) = from.read(&mut buf) {
        if n == 0 || to.write_all(&buf[..n]).is_err() {
            break;
        }
    }
    let _ = to.shutdown(Shutdown::Both);
}

fn forward_counting(mut from: TcpStream, mut to: TcpStream, counts: &Counts) {
    let mut buf = [0_u8; 64 * 1024];
    let mut pending: Vec<u8> = Vec::new();
    let mut started = false;
    while let Ok(n) = from.read(&mut buf) {
        if n == 0 || to.write_all(&buf[..n]).is_err() {
            break;
        }
        counts.bursts.fetch_add(1, Ordering::SeqCst);
        pending.extend_from_slice(&buf[..n]);
        loop {
            // The start-up packet has no type byte; every later message has one.
            let head = usize::from(started);
            if pending.len() < head + 4 {
                break;
            }
            let len = u32::from_be_bytes(pending[head..head + 4].try_into().unwrap()) as usize;
            if pending.len() < head + len {
                break;
            }
            if started {
                match pending[0] {
                    b'E' | b'Q' => counts.execs.fetch_add(1, Ordering::SeqCst),
                    b'P' => counts.parses.fetch_add(1, Ordering::SeqCst),
                    _ => 0,
                };
            }
            started = true;
            pending.drain(..head + len);
        }
    }
    let _ = to.shutdown(Shutdown::Both);
}

/// The use cases over `store`, whose store clock is `clock` too (the bench moves it to admit).
fn app(store: &PgStore, clock: &ManualClock) -> Ticketing {
    let store = store.clone().with_clock(Arc::new(clock.clone()));
    Ticketing::new(store.ports(Arc::new(clock.clone()), Arc::new(OsRandom)), Policy::default())
}

fn user() -> UserId {
    UserId::from_uuid(OsRandom.uuid())
}

/// A concert with three schedules of 50 seats, created through the catalogue port.
fn catalogue(app: &Ticketing, clock: &ManualClock) -> NewConcert {
    let concert = port_tests::fixture::new_concert(&OsRandom, "Bench", 50_000, clock.now());
    assert!(app.ports().catalogue.create_concert(&concert, None).unwrap());
    concert
}

/// `n` admitted users with their bearer strings.
fn active(app: &Ticketing, clock: &ManualClock, n: usize) -> Vec<(String, ActiveUser)> {
    let tokens: Vec<String> =
        (0..n).map(|_| app.issue_token(user()).unwrap().view.token.value.as_str().to_owned()).collect();
    while tokens.iter().any(|t| app.read_token(t).unwrap().status == TokenStatus::Waiting) {
        if let AdmissionOutcome::NotDue { wait } = app.admit().unwrap() {
            clock.advance(wait);
        }
    }
    tokens.into_iter().map(|t| (t.clone(), app.authorize(&t).unwrap())).collect()
}

fn report(what: &str, k: usize, counts: &Counts, mut f: impl FnMut(usize)) {
    // Two warm-up calls: prepared statements are cached per connection on first use.
    f(0);
    f(1);
    counts.take();
    for i in 2..k + 2 {
        f(i);
    }
    let [bursts, execs, parses] = counts.take();
    let per = |x: u64| x as f64 / k as f64;
    println!("{what:<28} {:>12.1} {:>11.1} {:>10.1}", per(bursts), per(execs), per(parses));
}

fn part1() {
    const K: usize = 20;
    let db = TestDatabase::create().unwrap();
    let counts = Arc::new(Counts::default());
    let port = proxy(counts.clone());
    let url = format!("postgres://postgres@127.0.0.1:{port}/{}?sslmode=disable", db.name());
    let cfg = PgConfig { pool_size: 1, ..PgConfig::new(url) };
    let store = PgStore::new(&cfg).unwrap();
    let clock = ManualClock::at_epoch();
    let app = app(&store, &clock);
    let catalogue = catalogue(&app, &clock);
    let users = active(&app, &clock, 3 * (K + 2));
    let schedule = &catalogue.schedules[0];
    let (t0, who0) = &users[0];
    for (_, who) in &users[K + 2..] {
        app.charge(who.user_id(), 1_000_000_000, None).unwrap();
    }
    let payers: Vec<_> = (0..K + 2)
        .map(|i| {
            let (_, who) = &users[K + 2 + i];
            let seat = &catalogue.schedules[1].seats[i];
            (who, app.reserve(who, catalogue.schedules[1].id, seat.id).unwrap().id)
        })
        .collect();

    println!("{:<28} {:>12} {:>11} {:>10}", "per call", "round trips", "statements", "parsed");
    report("poll (find_with_cursor)", K, &counts, |_| {
        app.read_token(t0).unwrap();
    });
    report("authorize (find)", K, &counts, |_| {
        app.authorize(t0).unwrap();
    });
    report("seat map", K, &counts, |_| {
        app.seats(who0, schedule.id).unwrap();
    });
    report("balance", K, &counts, |_| {
        app.balance(who0.user_id()).unwrap();
    });
    report("charge", K, &counts, |_| {
        app.charge(who0.user_id(), 1_000, None).unwrap();
    });
    let full = users[1].1.user_id();
    for _ in 0..10 {
        app.charge(full, 1_000_000_000, None).unwrap();
    }
    report("charge over the limit", K, &counts, |_| {
        assert!(app.charge(full, 1_000, None).is_err());
    });
    report("charge (keyed)", K, &counts, |i| {
        let key = domain::idempotency::IdempotencyKey::parse(&format!("bench-{i}")).unwrap();
        let request = domain::idempotency::IdempotencyRequest { key, render: &port_tests::fixture::render };
        app.charge(who0.user_id(), 1_000, Some(request)).unwrap();
    });
    report("issue (new user)", K, &counts, |_| {
        app.issue_token(user()).unwrap();
    });
    report("issue (user in line)", K, &counts, |_| {
        app.issue_token(who0.user_id()).unwrap();
    });
    report("reserve (free seat)", K, &counts, |i| {
        let (_, who) = &users[1 + i];
        app.reserve(who, schedule.id, schedule.seats[i].id).unwrap();
    });
    report("reserve (seat taken)", K, &counts, |i| {
        assert!(app.reserve(who0, schedule.id, schedule.seats[i].id).is_err());
    });
    report("pay", K, &counts, |i| {
        let (who, r) = payers[i];
        app.pay(who.token().value.as_str(), r, None).unwrap();
    });
    drop(app);
    drop(store);
}

fn timed(what: &str, threads: usize, secs: f64, f: impl Fn(usize, usize) + Sync) {
    let stop = AtomicBool::new(false);
    let done = AtomicU64::new(0);
    let started = Instant::now();
    thread::scope(|s| {
        for t in 0..threads {
            let (stop, done, f) = (&stop, &done, &f);
            s.spawn(move || {
                let mut i = 0;
                while !stop.load(Ordering::Relaxed) {
                    f(t, i);
                    i += 1;
                    done.fetch_add(1, Ordering::Relaxed);
                }
            });
        }
        thread::sleep(Duration::from_secs_f64(secs));
        stop.store(true, Ordering::Relaxed);
    });
    let n = done.load(Ordering::Relaxed);
    println!("{what:<28} {:>10.0} ops/s", n as f64 / started.elapsed().as_secs_f64());
}

fn part2() {
    const THREADS: usize = 8;
    let db = TestDatabase::create().unwrap();
    let cfg = PgConfig { pool_size: 8, ..PgConfig::new(db.url()) };
    let store = PgStore::new(&cfg).unwrap();
    let clock = ManualClock::at_epoch();
    let app = app(&store, &clock);
    let catalogue = catalogue(&app, &clock);
    let users = active(&app, &clock, THREADS);
    println!("\n{THREADS} threads, {} connections, libpq's default sslmode", cfg.pool_size);
    timed("poll", THREADS, 2.0, |t, _| {
        app.read_token(&users[t].0).unwrap();
    });
    timed("authorize + seat map", THREADS, 2.0, |t, _| {
        let who = app.authorize(&users[t].0).unwrap();
        app.seats(&who, catalogue.schedules[t % 3].id).unwrap();
    });
    timed("charge", THREADS, 2.0, |t, _| {
        app.charge(users[t].1.user_id(), 1, None).unwrap();
    });
    timed("issue (new user)", THREADS, 2.0, |_, _| {
        app.issue_token(user()).unwrap();
    });
    drop(app);
    drop(store);
}

fn main() {
    part1();
    // `-- --counts-only`: the round-trip counts alone, without the throughput part (no load).
    if !std::env::args().any(|a| a == "--counts-only") {
        part2();
    }
}
