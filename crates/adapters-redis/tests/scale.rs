//! Measurements at the scale of a big on-sale, `#[ignore]`d (minutes of setup, a GB of Redis
//! memory): run them one at a time on an idle machine and read the figures they print.
//!
//! ```text
//! cargo test -p adapters-redis --release --test scale -- --ignored --nocapture --test-threads=1
//! ```
//!
//! - `a_million_entrants_are_drawn_within_five_seconds_while_polls_go_on`: the draw of a
//!   pre-queue of 1,000,000 (every position checked), with other threads polling and issuing
//!   on another instance meanwhile: the draw's time, the polls' p99 and worst latency, and the
//!   longest single script of the draw (from Redis' own slow log, which lists every command
//!   over 10 ms by default).
//! - `an_admission_tick_skipping_nine_absent_per_present_one_stays_under_100_ms`: a line of
//!   1,000,000 where 9 of 10 buyers left, N = 100: each tick walks 1,000 tokens.
//!
//! The lines are written straight into Redis in the adapter's layout (issuing a million tokens
//! one script at a time would take minutes and measure nothing of interest here).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, reason = "tests")]

mod common;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration as StdDuration, Instant};

use adapters_redis::testing::layout;
use common::Namespace;
use domain::clock::{Clock as _, ManualClock};
use domain::ids::UserId;
use domain::ports::QueueStore;
use domain::queue::{AdmissionPolicy, TokenValue};
use domain::room::{drawn_positions, DrawOutcome, RoomId};
use time::{Duration, OffsetDateTime};

const MILLION: usize = 1_000_000;

fn micros(t: OffsetDateTime) -> i64 {
    i64::try_from(t.unix_timestamp_nanos() / 1_000).unwrap()
}

/// Token `i` (0-based) of `room`: random part `i` (big-endian, zero-padded), `seq` i + 1, so
/// the values' order is `i`'s.
fn value_of(room: &RoomId, i: usize) -> TokenValue {
    let mut random = [0_u8; 24];
    random[16..].copy_from_slice(&u64::try_from(i).unwrap().to_be_bytes());
    layout::value_of(room, &random, u64::try_from(i).unwrap() + 1)
}

/// Writes a line of `n` WAITING tokens of `room` in the adapter's layout: token `i` (0-based)
/// has `seq` i + 1, was issued at `issued`, and was last seen at `seen(i)` if any.
fn fill(ns: &Namespace, room: &RoomId, n: usize, issued: OffsetDateTime, seen: impl Fn(usize) -> Option<i64>) {
    let tag = layout::namespace(&ns.prefix, room);
    let mut con = ns.connection();
    let user = UserId::from_uuid(uuid::Uuid::new_v4());
    let started = Instant::now();
    for from in (0..n).step_by(10_000) {
        let mut pipe = redis::pipe();
        for i in from..(from + 10_000).min(n) {
            layout::push_waiting(&mut pipe, &ns.prefix, &value_of(room, i), user, micros(issued), seen(i));
        }
        pipe.query::<()>(&mut con).unwrap();
    }
    redis::cmd("SET").arg(format!("{tag}:issued")).arg(n).query::<()>(&mut con).unwrap();
    // As issue.lua leaves them: the line's epoch, the latest issue time, and how far issue
    // times went back in line order (never, on one clock).
    redis::cmd("HSET")
        .arg(format!("{tag}:cursor"))
        .arg(&[("epoch", micros(issued)), ("layout", 2), ("imax", micros(issued)), ("iback", 0)])
        .query::<()>(&mut con)
        .unwrap();
    eprintln!("filled {n} tokens in {:?}", started.elapsed());
}

/// Entries of Redis' slow log since `since` (unix seconds) whose arguments name `tag`: their
/// durations in µs, longest first.
fn slow_scripts(ns: &Namespace, tag: &str, since: i64) -> Vec<i64> {
    let entries: Vec<redis::Value> = redis::cmd("SLOWLOG").arg("GET").arg(128).query(&mut ns.connection()).unwrap();
    let mut out = Vec::new();
    for entry in entries {
        let redis::Value::Array(fields) = entry else { continue };
        let (Some(redis::Value::Int(at)), Some(redis::Value::Int(us)), Some(redis::Value::Array(args))) =
            (fields.get(1), fields.get(2), fields.get(3))
        else {
            continue;
        };
        let names_tag =
            args.iter().any(|a| matches!(a, redis::Value::BulkString(b) if String::from_utf8_lossy(b).contains(tag)));
        if *at >= since && names_tag {
            out.push(*us);
        }
    }
    out.sort_unstable_by(|a, b| b.cmp(a));
    out
}

/// Redis' total time in `EVALSHA` so far (µs, all clients: read it around a quiet stretch).
fn script_micros(ns: &Namespace) -> i64 {
    let info: String = redis::cmd("INFO").arg("commandstats").query(&mut ns.connection()).unwrap();
    info.lines()
        .find_map(|l| l.strip_prefix("cmdstat_evalsha:"))
        .and_then(|l| l.split(',').find_map(|f| f.strip_prefix("usec=")))
        .map_or(0, |us| us.parse().unwrap())
}

/// CPU seconds Redis' process has used so far (user + system): the server's work, whatever
/// else runs on the machine.
fn redis_cpu(ns: &Namespace) -> f64 {
    let info: String = redis::cmd("INFO").arg("cpu").query(&mut ns.connection()).unwrap();
    info.lines()
        .filter_map(|l| l.strip_prefix("used_cpu_user:").or_else(|| l.strip_prefix("used_cpu_sys:")))
        .map(|v| v.trim().parse::<f64>().unwrap())
        .sum()
}

/// CPU seconds this test process has used so far (user + system, from /proc).
fn own_cpu() -> f64 {
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap();
    let after = &stat[stat.rfind(')').unwrap() + 2..];
    let fields: Vec<&str> = after.split(' ').collect();
    let ticks: f64 = fields[11].parse::<f64>().unwrap() + fields[12].parse::<f64>().unwrap();
    ticks / 100.0
}

fn load() -> String {
    std::fs::read_to_string("/proc/loadavg").unwrap_or_default().split(' ').next().unwrap_or("?").to_owned()
}

fn unix_now() -> i64 {
    i64::try_from(std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs()).unwrap()
}

fn percentile(sorted: &[StdDuration], p: f64) -> StdDuration {
    if sorted.is_empty() {
        return StdDuration::ZERO;
    }
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i]
}

#[test]
#[ignore = "a million tokens: run on its own (see the module docs)"]
fn a_million_entrants_are_drawn_within_five_seconds_while_polls_go_on() {
    let ns = Namespace::new();
    let clock = ManualClock::at_epoch();
    let room = RoomId::parse("bigshow").unwrap();
    let opens = clock.now();
    fill(&ns, &room, MILLION, opens - Duration::hours(1), |_| None);
    let drawer = ns.queue(Arc::new(clock.clone())).line(&room);
    let poller = ns.queue(Arc::new(clock.clone())).line(&room);
    let since = unix_now();
    let busy_before = script_micros(&ns);
    let (redis_before, own_before) = (redis_cpu(&ns), own_cpu());

    let done = AtomicBool::new(false);
    let (outcome, took, mut latencies, issued) = std::thread::scope(|s| {
        let pollers: Vec<_> = (0..2)
            .map(|p| {
                let (poller, done, room, clock) = (&poller, &done, &room, &clock);
                s.spawn(move || {
                    let mut lat = Vec::new();
                    let mut issued = Vec::new();
                    let mut i = 0_usize;
                    while !done.load(Ordering::Acquire) {
                        let started = Instant::now();
                        if p == 0 || !i.is_multiple_of(4) {
                            let v = value_of(room, (i * 7919) % MILLION);
                            assert!(poller.find_with_cursor(&v).unwrap().is_some());
                        } else {
                            let user = UserId::from_uuid(uuid::Uuid::new_v4());
                            let mut bytes = [0_u8; 32];
                            bytes[..16].copy_from_slice(uuid::Uuid::new_v4().as_bytes());
                            let t =
                                poller.issue(user, TokenValue::from_bytes(bytes).in_room(room), clock.now()).unwrap();
                            issued.push(t.token);
                        }
                        lat.push(started.elapsed());
                        i += 1;
                        std::thread::sleep(StdDuration::from_millis(2));
                    }
                    (lat, issued)
                })
            })
            .collect();
        std::thread::sleep(StdDuration::from_millis(100));
        let started = Instant::now();
        let outcome = drawer.draw(opens, 0x5eed).unwrap();
        let took = started.elapsed();
        done.store(true, Ordering::Release);
        let mut all = Vec::new();
        let mut issued = Vec::new();
        for h in pollers {
            let (lat, iss) = h.join().unwrap();
            all.extend(lat);
            issued.extend(iss);
        }
        (outcome, took, all, issued)
    });
    let busy = script_micros(&ns) - busy_before;
    let (redis_used, own_used) = (redis_cpu(&ns) - redis_before, own_cpu() - own_before);
    let DrawOutcome::Drawn { record, fresh: true } = outcome else { panic!("{outcome:?}") };
    assert_eq!(record.entrants, u64::try_from(MILLION).unwrap());
    latencies.sort_unstable();
    let slow = slow_scripts(&ns, &format!("{{{}:{room}}}", ns.prefix), since);
    eprintln!(
        "DRAW of {MILLION}: {took:?}; polls+issues during it: {} calls, p50 {:?}, p99 {:?}, max {:?}; \
         scripts over 10 ms: {} (longest {} µs); Redis busy in scripts {} ms; CPU: Redis {:.2} s, \
         this process (drawer and pollers) {:.2} s; load average {}",
        latencies.len(),
        percentile(&latencies, 0.5),
        percentile(&latencies, 0.99),
        latencies.last().copied().unwrap_or_default(),
        slow.len(),
        slow.first().copied().unwrap_or(0),
        busy / 1000,
        redis_used,
        own_used,
        load(),
    );

    // Every position exact, in the position table and in the WAITING list. Entrant i in the
    // order of values is token i: the values are i in zero-padded hex.
    assert!(value_of(&room, 9) < value_of(&room, 10));
    let started = Instant::now();
    let positions = drawn_positions(record.seed, u64::try_from(MILLION).unwrap());
    let tag = format!("{{{}:{room}}}", ns.prefix);
    let mut con = ns.connection();
    let list = layout::waiting(&mut con, &ns.prefix, &room).unwrap();
    assert_eq!(list.len(), MILLION + issued.len(), "none lost");
    for (i, p) in positions.iter().enumerate() {
        assert_eq!(
            list[usize::try_from(*p).unwrap() - 1],
            u64::try_from(i).unwrap() + 1,
            "entrant {i} at {p} in the list"
        );
    }
    // No token written (each keeps its arrival seq i + 1); the position table maps it.
    let table: Vec<u8> = redis::cmd("GET").arg(format!("{tag}:drawn")).query(&mut con).unwrap();
    // The claim may take tokens the pollers issued in the 100 ms before it, as later ones.
    assert!(table.len().is_multiple_of(4) && (MILLION..=MILLION + issued.len()).contains(&(table.len() / 4)));
    for from in (0..MILLION).step_by(10_000) {
        let mut pipe = redis::pipe();
        for i in from..(from + 10_000).min(MILLION) {
            let (bucket, field, _) = layout::keys_of(&ns.prefix, &value_of(&room, i)).unwrap();
            pipe.hexists(bucket, field);
        }
        let kept: Vec<bool> = pipe.query(&mut con).unwrap();
        for (k, kept) in kept.iter().enumerate() {
            let i = from + k;
            assert!(kept, "entrant {i} keeps its record, at its arrival seq");
            let drawn = u32::from_be_bytes(table[4 * i..4 * i + 4].try_into().unwrap());
            assert_eq!(u64::from(drawn), positions[i], "entrant {i} has its drawn seq in the table");
        }
    }
    for i in (0..MILLION).step_by(99_991) {
        let found = poller.find(&value_of(&room, i)).unwrap().unwrap();
        assert_eq!(u64::try_from(found.seq).unwrap(), positions[i], "entrant {i} read at its drawn seq");
    }
    let mut later_seqs: Vec<i64> = issued.iter().map(|t| poller.find(&t.value).unwrap().unwrap().seq).collect();
    later_seqs.sort_unstable();
    let first_later = i64::try_from(MILLION).unwrap() + 1;
    assert_eq!(later_seqs, (first_later..first_later + i64::try_from(issued.len()).unwrap()).collect::<Vec<_>>());
    eprintln!("checked every position in {:?}", started.elapsed());
    assert!(took < StdDuration::from_secs(5), "the draw took {took:?}");
}

#[test]
#[ignore = "a million tokens: run on its own (see the module docs)"]
fn an_admission_tick_skipping_nine_absent_per_present_one_stays_under_100_ms() {
    let ns = Namespace::new();
    let clock = ManualClock::at_epoch();
    let room = RoomId::parse("leavers").unwrap();
    let now = clock.now();
    // Issued an hour ago; every tenth seen a day ahead (present for every tick below).
    let present_until = micros(now + Duration::days(1));
    fill(&ns, &room, MILLION, now - Duration::hours(1), |i| (i % 10 == 9).then_some(present_until));
    let line = ns.queue(Arc::new(clock.clone())).line(&room);
    let policy = AdmissionPolicy {
        batch: 100,
        interval: Duration::seconds(60),
        active_ttl: Duration::seconds(600),
        max_active: None,
        abandon_after: Some(Duration::seconds(60)),
    };
    let since = unix_now();
    let mut times = Vec::new();
    for tick in 0..20 {
        let started = Instant::now();
        let outcome = line.admit(&policy).unwrap();
        times.push(started.elapsed());
        assert_eq!((outcome.admitted(), outcome.abandoned()), (100, 900), "tick {tick}");
        clock.advance(Duration::seconds(60));
    }
    let stats = line.stats().unwrap();
    assert_eq!((stats.abandoned, stats.cursor.admitted_through), (18_000, 20_000));
    times.sort_unstable();
    let slow = slow_scripts(&ns, &format!("{{{}:{room}}}", ns.prefix), since);
    eprintln!(
        "ABANDON tick (N = 100, 900 skipped, line of {MILLION}): median {:?}, max {:?}; scripts over 10 ms: {}; \
         load average {}",
        percentile(&times, 0.5),
        times.last().copied().unwrap_or_default(),
        slow.len(),
        load()
    );
    assert!(times.last().copied().unwrap_or_default() < StdDuration::from_millis(100));
}
