//! What only the Redis adapter has: its key layout and namespace, the retention of expired
//! tokens, microsecond times through Lua, Redis' own clock, lazy start-up. The port's
//! behaviour itself is the conformance suite's (`conformance.rs`).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, reason = "tests")]

mod common;

use std::net::TcpListener;
use std::sync::Arc;
use std::time::Instant;

use adapters_redis::testing::layout;
use adapters_redis::{RedisConfig, RedisQueue};
use common::Namespace;
use domain::clock::{Clock as _, ManualClock};
use domain::ids::UserId;
use domain::ports::{QueueStore, StoreError};
use domain::queue::{AdmissionOutcome, AdmissionPolicy, TokenStatus, TokenValue};
use domain::room::RoomId;
use redis::Commands as _;
use time::{Duration, OffsetDateTime};

fn user() -> UserId {
    UserId::from_uuid(uuid::Uuid::new_v4())
}

fn value() -> TokenValue {
    let mut bytes = [0_u8; 32];
    bytes[..16].copy_from_slice(uuid::Uuid::new_v4().as_bytes());
    bytes[16..].copy_from_slice(uuid::Uuid::new_v4().as_bytes());
    TokenValue::from_bytes(bytes)
}

fn policy(batch: u32) -> AdmissionPolicy {
    AdmissionPolicy {
        batch,
        interval: Duration::seconds(60),
        active_ttl: Duration::seconds(600),
        max_active: None,
        abandon_after: None,
    }
}

#[test]
fn times_keep_their_microseconds_and_every_key_stays_in_the_namespace() {
    let ns = Namespace::new();
    let clock = ManualClock::new(OffsetDateTime::from_unix_timestamp_nanos(1_893_456_000_123_456_000).unwrap());
    let queue = ns.queue(Arc::new(clock.clone()));
    let issued = queue.issue(user(), value(), clock.now()).unwrap();
    assert_eq!(issued.token.issued_at, clock.now());
    clock.advance(Duration::microseconds(1));
    assert_eq!(queue.admit(&policy(1)).unwrap(), AdmissionOutcome::Admitted(1));
    let token = queue.find(&issued.token.value).unwrap().unwrap();
    assert_eq!(token.activated_at, Some(clock.now()), "to the microsecond");
    assert_eq!(token.expires_at, Some(clock.now() + Duration::seconds(600)));
    assert_eq!(queue.cursor().unwrap().last_admission_at, Some(clock.now()));

    let keys = ns.keys();
    assert!(!keys.is_empty());
    let namespace = format!("{{{}}}:", ns.prefix);
    assert!(keys.iter().all(|k| k.starts_with(&namespace)), "{keys:?}");
    assert_eq!(queue.namespace(), format!("{{{}}}", ns.prefix));
}

#[test]
fn two_prefixes_on_one_server_are_two_separate_lines() {
    let (a, b) = (Namespace::new(), Namespace::new());
    let clock = ManualClock::at_epoch();
    let (qa, qb) = (a.queue(Arc::new(clock.clone())), b.queue(Arc::new(clock.clone())));
    let u = user();
    let ta = qa.issue(u, value(), clock.now()).unwrap();
    let tb = qb.issue(u, value(), clock.now()).unwrap();
    assert!(ta.created && tb.created, "one place per user in each line");
    assert_eq!((ta.token.seq, tb.token.seq), (1, 1));
    assert_eq!(qb.find(&ta.token.value).unwrap(), None);
    assert_eq!(qa.admit(&policy(10)).unwrap(), AdmissionOutcome::Admitted(1));
    assert_eq!(qb.cursor().unwrap().admitted_through, 0);
}

#[test]
fn an_expired_token_stays_findable_for_the_retention_then_redis_drops_it() {
    let ns = Namespace::new();
    let clock = ManualClock::at_epoch();
    let queue = ns.queue(Arc::new(clock.clone()));
    let u = user();
    let t = queue.issue(u, value(), clock.now()).unwrap().token;
    let waiting = queue.issue(user(), value(), clock.now()).unwrap().token;
    let mut con = ns.connection();
    let (bucket, _, expired_key) = layout::keys_of(&ns.prefix, &t.value).unwrap();
    let main = RoomId::main();
    assert_eq!(con.pttl::<_, i64>(&bucket).unwrap(), -1, "WAITING records are kept");
    assert!(!con.exists::<_, bool>(&expired_key).unwrap());
    assert_eq!(layout::user_seq(&mut con, &ns.prefix, &main, u).unwrap(), Some(layout::seq_of(&t.value)));

    assert_eq!(queue.admit(&policy(1)).unwrap(), AdmissionOutcome::Admitted(1));
    assert_eq!(layout::stored(&mut con, &ns.prefix, &t.value).unwrap().unwrap().status, "WAITING", "derived ACTIVE");
    clock.advance(Duration::seconds(600));
    assert_eq!(queue.expire_tokens(100).unwrap(), 1);

    assert_eq!(queue.find(&t.value).unwrap().unwrap().status, TokenStatus::Expired, "a poll still answers EXPIRED");
    let day_ms = 86_400_000;
    let ttl: i64 = con.pttl(&expired_key).unwrap();
    assert!(0 < ttl && ttl <= day_ms, "{expired_key}: {ttl}");
    assert_eq!(layout::stored(&mut con, &ns.prefix, &t.value).unwrap().unwrap().status, "EXPIRED");
    assert_eq!(layout::user_seq(&mut con, &ns.prefix, &main, u).unwrap(), None, "the user's entry went with it");
    let other = layout::stored(&mut con, &ns.prefix, &waiting.value).unwrap().unwrap();
    assert_eq!(other.status, "WAITING", "the sweep leaves WAITING tokens alone");

    // A new token for the user takes an entry again.
    let again = queue.issue(u, value(), clock.now()).unwrap();
    assert!(again.created);
    assert_eq!(layout::user_seq(&mut con, &ns.prefix, &main, u).unwrap(), Some(layout::seq_of(&again.token.value)));
}

#[test]
fn with_a_short_retention_an_expired_token_becomes_unknown() {
    let ns = Namespace::new();
    let clock = ManualClock::at_epoch();
    let cfg = RedisConfig { expired_retention: std::time::Duration::from_millis(1), ..ns.config() };
    let queue = RedisQueue::new(&cfg).unwrap().with_clock(Arc::new(clock.clone()));
    let t = queue.issue(user(), value(), clock.now()).unwrap().token;
    assert_eq!(queue.admit(&policy(1)).unwrap(), AdmissionOutcome::Admitted(1));
    queue.use_up(&t.value, clock.now()).unwrap();
    // Redis expires the key on access once its 1 ms TTL has passed; wait for that on Redis'
    // clock, observing the key rather than timing it.
    let mut con = ns.connection();
    let (_, _, key) = layout::keys_of(&ns.prefix, &t.value).unwrap();
    while con.exists::<_, bool>(&key).unwrap() {
        std::thread::yield_now();
    }
    assert_eq!(queue.find(&t.value).unwrap(), None);
}

/// A token's value names its record: 24 random bytes and its arrival `seq`. A value whose
/// random part is not the record's is no token, whatever its `seq`; a value with no `seq` in
/// it is not looked up at all.
#[test]
fn a_value_names_its_record_by_its_seq_and_random_part() {
    let ns = Namespace::new();
    let clock = ManualClock::at_epoch();
    let queue = ns.queue(Arc::new(clock.clone()));
    let planned = value();
    let t = queue.issue(user(), planned.clone(), clock.now()).unwrap().token;
    assert_eq!(&t.value.as_str()[..48], &planned.as_str()[..48], "the random part is the planned one's");
    assert_eq!(layout::seq_of(&t.value), 1);
    assert_eq!(queue.find(&t.value).unwrap().map(|f| f.seq), Some(1));
    let forged = layout::value_of(&RoomId::main(), &[7; 24], 1);
    assert_eq!(queue.find(&forged).unwrap(), None, "seq 1 with other random bytes");
    queue.use_up(&forged, clock.now()).unwrap();
    queue.note_seen(&[forged], clock.now()).unwrap();
    assert_eq!(queue.find(&t.value).unwrap().unwrap().status, TokenStatus::Waiting, "untouched");
    assert_eq!(queue.find(&planned).unwrap(), None, "a value without its seq");
}

/// A line an earlier version wrote (a key per token: it has an epoch and no `layout`) is
/// refused by issue, admission, the expiry sweep and a draw, with an error naming it, and
/// nothing is written or popped.
#[test]
fn a_line_written_by_the_key_per_token_layout_is_refused_not_misread() {
    let ns = Namespace::new();
    let clock = ManualClock::at_epoch();
    let queue = ns.queue(Arc::new(clock.clone()));
    let mut con = ns.connection();
    let tag = format!("{{{}}}", ns.prefix);
    let _: () = con.hset_multiple(format!("{tag}:cursor"), &[("epoch", "1"), ("admitted", "0")]).unwrap();
    let _: () = con.rpush(format!("{tag}:waiting"), "ab".repeat(32)).unwrap();
    let before = ns.keys();
    match queue.issue(user(), value(), clock.now()) {
        Err(StoreError::Internal(e)) => assert!(e.contains("earlier version"), "{e}"),
        other => panic!("expected a refusal, got {other:?}"),
    }
    assert!(matches!(queue.admit(&policy(1)), Err(StoreError::Internal(_))));
    assert!(matches!(queue.expire_tokens(10), Err(StoreError::Internal(_))));
    let opens = clock.now();
    assert!(matches!(queue.draw(opens, 1), Err(StoreError::Internal(_))));
    assert_eq!(ns.keys(), before, "nothing written");
    assert_eq!(ns.connection().llen::<_, i64>(format!("{tag}:waiting")).unwrap(), 1, "nothing popped");
}

#[test]
fn admission_on_redis_time_stamps_tokens_with_the_servers_clock_and_waits_relative_to_it() {
    let ns = Namespace::new();
    let queue = ns.queue_on_server_time();
    let mut con = ns.connection();
    let server_now = |con: &mut adapters_redis::testing::TestConnection| {
        let (s, us): (i64, i64) = redis::cmd("TIME").query(con).unwrap();
        OffsetDateTime::from_unix_timestamp_nanos(i128::from(s * 1_000_000 + us) * 1_000).unwrap()
    };
    // The caller's `now` for issue is its own; here it is far from the server's on purpose.
    let far = OffsetDateTime::from_unix_timestamp(1_000_000_000).unwrap();
    let t = queue.issue(user(), value(), far).unwrap().token;
    queue.issue(user(), value(), far).unwrap();

    let before = server_now(&mut con);
    assert_eq!(queue.admit(&policy(1)).unwrap(), AdmissionOutcome::Admitted(1));
    let after = server_now(&mut con);
    let activated = queue.find(&t.value).unwrap().unwrap().activated_at.unwrap();
    assert!(before <= activated && activated <= after, "{before} <= {activated} <= {after}");

    match queue.admit(&policy(1)).unwrap() {
        AdmissionOutcome::NotDue { wait } => assert!(Duration::ZERO < wait && wait <= Duration::seconds(60), "{wait}"),
        other => panic!("expected NotDue, got {other:?}"),
    }
    let stats = queue.stats().unwrap();
    assert!(after <= stats.now, "stats read Redis' clock");
    assert_eq!((stats.waiting, stats.active, stats.issued_through), (1, 1, 2));
    assert_eq!(queue.expire_tokens(10).unwrap(), 0, "600 s on Redis' clock have not passed");
}

#[test]
fn it_starts_with_redis_unreachable_and_fails_calls_as_unavailable_within_the_budget() {
    // A port nobody listens on: bound, then released.
    let port = TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let ns = Namespace::on(&format!("redis://127.0.0.1:{port}"));
    let queue = ns.queue_on_server_time();
    let started = Instant::now();
    assert!(matches!(queue.ping(), Err(StoreError::Unavailable(_))));
    assert!(matches!(queue.issue(user(), value(), ManualClock::at_epoch().now()), Err(StoreError::Unavailable(_))));
    let stored_shape = layout::value_of(&RoomId::main(), &[1; 24], 1);
    assert!(matches!(queue.find(&stored_shape), Err(StoreError::Unavailable(_))));
    // Not a timing assertion on the code under test's speed: the contract's bound on a hang.
    assert!(started.elapsed() < std::time::Duration::from_secs(15), "three calls, each under 5 s");
}

#[test]
fn a_bad_configuration_is_refused_at_construction() {
    assert!(RedisQueue::new(&RedisConfig::with_url("postgres://localhost/x")).is_err());
    assert!(RedisQueue::new(&RedisConfig::with_url_and_prefix(common::REDIS_URL, "")).is_err());
}

/// Issue 21: Redis restarted empty (here: every key of the namespace deleted). The line it
/// creates next has another epoch; through the poll cache, a token of the old line is unknown
/// at its first poll after one cursor window, even though the old line's cursor was ahead of
/// the new one's, and the new line's positions are its own.
#[test]
fn a_line_redis_lost_is_a_new_epoch_and_the_poll_cache_forgets_the_old_one() {
    use adapters_local::poll_cache::{CachedQueue, PollCacheSettings};
    use adapters_local::ticker::ManualTicker;

    let ns = Namespace::new();
    let clock = ManualClock::at_epoch();
    let queue: Arc<dyn QueueStore> = Arc::new(ns.queue(Arc::new(clock.clone())));
    let ticker = ManualTicker::new();
    let settings = PollCacheSettings::default();
    let cached = CachedQueue::new(queue.clone(), Arc::new(ticker.clone()), settings);
    assert_eq!(queue.cursor().unwrap().epoch, 0, "no line before the first issue");
    let old: Vec<_> = (0..4).map(|_| cached.issue(user(), value(), clock.now()).unwrap().token).collect();
    let epoch = queue.cursor().unwrap().epoch;
    assert_ne!(epoch, 0);
    assert_eq!(queue.admit(&policy(1)).unwrap(), AdmissionOutcome::Admitted(1));
    ticker.advance(settings.cursor_ttl);
    assert_eq!(cached.find_with_cursor(&old[3].value).unwrap().map(|(t, c)| t.seq - c.admitted_through), Some(3));
    assert_eq!(queue.cursor().unwrap().epoch, epoch, "admission keeps the line");

    let mut con = ns.connection();
    for key in ns.keys() {
        let () = con.del(&key).unwrap();
    }
    // Still served from memory within the window (the cursor read then was of the old line).
    assert!(cached.find_in_memory(&old[3].value).is_some());
    ticker.advance(settings.cursor_ttl);
    for t in &old[1..] {
        assert_eq!(cached.find_with_cursor(&t.value).unwrap(), None, "seq {} of the lost line", t.seq);
        assert_eq!(cached.find_in_memory(&t.value), None);
    }
    assert!(cached.is_empty());

    let new: Vec<_> = (0..2).map(|_| cached.issue(user(), value(), clock.now()).unwrap()).collect();
    let new_epoch = new[0].cursor.epoch;
    assert!(new_epoch != 0 && new_epoch != epoch, "{epoch} -> {new_epoch}");
    for (i, n) in new.iter().enumerate() {
        let (t, c) = cached.find_with_cursor(&n.token.value).unwrap().unwrap();
        assert_eq!((t.seq - c.admitted_through, c.epoch), (i64::try_from(i).unwrap() + 1, new_epoch));
    }
    for t in &old {
        assert_eq!(cached.find_with_cursor(&t.value).unwrap(), None);
    }
}

/// The status of a token as stored (not as read through the scripts).
fn stored_status(
    con: &mut adapters_redis::testing::TestConnection,
    ns: &Namespace,
    value: &TokenValue,
) -> &'static str {
    layout::stored(con, &ns.prefix, value).unwrap().map_or("none", |t| t.status)
}

/// An admission writes no token: a token it admitted stays stored WAITING, and every read
/// derives ACTIVE, `activated_at` and `expires_at` from its position and the tick that covered
/// it; the injected clock moving past `expires_at` makes it EXPIRED (TTL) for every reader,
/// and the sweep then writes exactly what was derived.
#[test]
fn admitted_tokens_read_the_time_of_the_tick_that_covered_them_and_expire_with_the_clock() {
    let ns = Namespace::new();
    let clock = ManualClock::new(OffsetDateTime::from_unix_timestamp_nanos(1_893_456_000_000_001_000).unwrap());
    let queue = ns.queue(Arc::new(clock.clone()));
    let mut con = ns.connection();
    let tokens: Vec<_> = (0..5).map(|_| queue.issue(user(), value(), clock.now()).unwrap().token).collect();
    let find = |i: usize| queue.find(&tokens[i].value).unwrap().unwrap();

    let first = clock.now();
    assert_eq!(queue.admit(&policy(2)).unwrap(), AdmissionOutcome::Admitted(2));
    clock.advance(Duration::seconds(61));
    let second = clock.now();
    assert_eq!(queue.admit(&policy(2)).unwrap(), AdmissionOutcome::Admitted(2));
    let ttl = Duration::seconds(600);
    for (i, at) in [(0, first), (1, first), (2, second), (3, second)] {
        let t = find(i);
        assert_eq!(
            (t.seq, t.status, t.activated_at, t.expires_at),
            (tokens[i].seq, TokenStatus::Active, Some(at), Some(at + ttl))
        );
        assert_eq!(stored_status(&mut con, &ns, &t.value), "WAITING", "derived, not written");
    }
    assert_eq!((find(4).status, find(4).activated_at), (TokenStatus::Waiting, None));
    let (got, cursor) = queue.find_with_cursor(&tokens[2].value).unwrap().unwrap();
    assert_eq!((got, cursor.admitted_through), (find(2), 4));
    assert_eq!(queue.stats().unwrap().active, 4);

    // The first tick's TTL runs out: its tokens read EXPIRED (TTL) before any sweep.
    clock.set(first + ttl);
    assert_eq!(find(0).status_at(clock.now()), TokenStatus::Expired);
    assert_eq!(find(0).expired_reason_at(clock.now()), Some(domain::queue::ExpiredReason::Ttl));
    assert_eq!(find(2).status_at(clock.now()), TokenStatus::Active);
    assert_eq!(queue.stats().unwrap().active, 2);
    // Its user queues again: the lapsed token is written EXPIRED with what was derived.
    let again = queue.issue(tokens[1].user_id, value(), clock.now()).unwrap();
    assert!(again.created);
    assert_eq!((again.token.seq, again.token.status), (6, TokenStatus::Waiting));
    let lapsed = find(1);
    assert_eq!(
        (lapsed.status, lapsed.activated_at, lapsed.expires_at),
        (TokenStatus::Expired, Some(first), Some(first + ttl))
    );
    assert_eq!(lapsed.expired_reason, Some(domain::queue::ExpiredReason::Ttl));

    // The sweep writes the first tick's tokens (one left to write), not the second's.
    let before = find(0);
    assert_eq!(queue.expire_tokens(10).unwrap(), 1);
    assert_eq!(queue.expire_tokens(10).unwrap(), 0, "each once");
    let swept = find(0);
    assert_eq!((swept.status, swept.expired_reason), (TokenStatus::Expired, Some(domain::queue::ExpiredReason::Ttl)));
    assert_eq!((swept.activated_at, swept.expires_at), (before.activated_at, before.expires_at), "as derived");
    assert_eq!(stored_status(&mut con, &ns, &tokens[0].value), "EXPIRED");
    assert_eq!(find(2).status, TokenStatus::Active);

    // The second tick's: a payment before its end uses one up (once); the other expires.
    queue.use_up(&tokens[2].value, second + Duration::seconds(5)).unwrap();
    let paid = find(2);
    assert_eq!((paid.status, paid.expired_reason), (TokenStatus::Expired, Some(domain::queue::ExpiredReason::Paid)));
    assert_eq!((paid.activated_at, paid.expires_at), (Some(second), Some(second + Duration::seconds(5))));
    queue.use_up(&tokens[2].value, second + Duration::seconds(6)).unwrap();
    assert_eq!(find(2), paid, "idempotent");
    assert_eq!(queue.stats().unwrap().active, 1, "the payment left the count");
    // A use-up that lands after the TTL ran out pays nothing: the token expired by its TTL.
    queue.use_up(&tokens[3].value, second + ttl).unwrap();
    assert_eq!(find(3).status, TokenStatus::Active);
    clock.set(second + ttl);
    assert_eq!(queue.stats().unwrap().active, 0);
    assert_eq!(find(3).status_at(clock.now()), TokenStatus::Expired);
    assert_eq!(queue.expire_tokens(10).unwrap(), 1, "the paid one is only dropped from the list");
    let expired = find(3);
    assert_eq!((expired.status, expired.expires_at), (TokenStatus::Expired, Some(second + ttl)));
    assert_eq!(find(2), paid);
    // Every admitted token left the list and every record went with them.
    let waiting = layout::waiting(&mut con, &ns.prefix, &RoomId::main()).unwrap();
    assert_eq!(waiting, [layout::seq_of(&tokens[4].value), layout::seq_of(&again.token.value)]);
    assert_eq!(con.zcard::<_, i64>(format!("{{{}}}:admissions", ns.prefix)).unwrap(), 0);
    assert_eq!(queue.stats().unwrap().waiting, 2);
}

/// Under a cap, the active count is the records' sizes minus use-ups, up to their expiry.
#[test]
fn the_cap_counts_admitted_tokens_until_they_pay_or_expire() {
    let ns = Namespace::new();
    let clock = ManualClock::at_epoch();
    let queue = ns.queue(Arc::new(clock.clone()));
    let tokens: Vec<_> = (0..8).map(|_| queue.issue(user(), value(), clock.now()).unwrap().token).collect();
    let capped = AdmissionPolicy { max_active: Some(3), ..policy(5) };
    assert_eq!(queue.admit(&capped).unwrap(), AdmissionOutcome::Admitted(3));
    clock.advance(Duration::seconds(60));
    assert_eq!(queue.admit(&capped).unwrap(), AdmissionOutcome::Admitted(0), "three active");
    queue.use_up(&tokens[0].value, clock.now()).unwrap();
    queue.use_up(&tokens[0].value, clock.now()).unwrap();
    clock.advance(Duration::seconds(60));
    assert_eq!(queue.admit(&capped).unwrap(), AdmissionOutcome::Admitted(1), "one paid, once");
    clock.advance(Duration::seconds(480)); // the first tick's TTL ran out
    assert_eq!(queue.stats().unwrap().active, 1);
    assert_eq!(queue.admit(&capped).unwrap(), AdmissionOutcome::Admitted(2));
    assert_eq!(queue.cursor().unwrap().admitted_through, 6);
}

/// A tick of 100,000 WAITING tokens is O(1) in Redis: it writes no token's record, takes no
/// `seq` off the WAITING list and adds one record; its tokens read ACTIVE all the same.
#[test]
fn a_tick_of_100_000_tokens_writes_one_record_and_no_token() {
    const N: usize = 100_000;
    let ns = Namespace::new();
    let clock = ManualClock::at_epoch();
    let queue = ns.queue(Arc::new(clock.clone()));
    let mut con = ns.connection();
    let tag = format!("{{{}}}", ns.prefix);
    let main = RoomId::main();
    let issued = queue.issue(user(), value(), clock.now()).unwrap().token;
    // The rest as issue.lua leaves them, written in bulk.
    let values: Vec<TokenValue> =
        (2..=N).map(|seq| layout::value_of(&main, &[0x5a; 24], u64::try_from(seq).unwrap())).collect();
    let micros = i64::try_from(clock.now().unix_timestamp_nanos() / 1_000).unwrap();
    for chunk in values.chunks(10_000) {
        let mut pipe = redis::pipe();
        for v in chunk {
            layout::push_waiting(&mut pipe, &ns.prefix, v, user(), micros, None);
        }
        pipe.query::<()>(&mut con).unwrap();
    }
    let _: () = con.set(format!("{tag}:issued"), N).unwrap();
    let last = values.last().unwrap();
    let before: Vec<_> =
        values.iter().chain([&issued.value]).map(|v| layout::stored(&mut con, &ns.prefix, v).unwrap()).collect();
    let keys_before = ns.keys().len();

    assert_eq!(queue.admit(&policy(u32::try_from(N).unwrap())).unwrap(), AdmissionOutcome::Admitted(N as u64));

    assert_eq!(con.llen::<_, usize>(format!("{tag}:waiting")).unwrap(), N, "nothing popped");
    assert_eq!(con.zcard::<_, usize>(format!("{tag}:admissions")).unwrap(), 1, "one record");
    assert_eq!(ns.keys().len(), keys_before + 2, "the record and its open count, nothing else");
    // Every token's record is as it was: stored WAITING, with no activation written.
    let after: Vec<_> =
        values.iter().chain([&issued.value]).map(|v| layout::stored(&mut con, &ns.prefix, v).unwrap()).collect();
    assert_eq!(after, before);
    assert!(after.iter().all(|t| t.as_ref().is_some_and(|t| t.status == "WAITING" && t.activated.is_none())));
    let expires = clock.now() + Duration::seconds(600);
    for v in [&issued.value, last] {
        let t = queue.find(v).unwrap().unwrap();
        assert_eq!((t.status, t.activated_at, t.expires_at), (TokenStatus::Active, Some(clock.now()), Some(expires)));
    }
    let stats = queue.stats().unwrap();
    assert_eq!((stats.waiting, stats.active, stats.cursor.admitted_through), (0, N as u64, N as i64));
}

/// Tokens a tick skipped as abandoned were written EXPIRED then; they leave the WAITING list
/// with the first sweep after every admitted token before them expired, which writes nothing
/// for them, even when no tick ever admits a token after them.
#[test]
fn abandoned_tokens_leave_the_list_with_the_sweep() {
    let ns = Namespace::new();
    let clock = ManualClock::at_epoch();
    let queue = ns.queue(Arc::new(clock.clone()));
    let tokens: Vec<_> = (0..4).map(|_| queue.issue(user(), value(), clock.now()).unwrap().token).collect();
    queue.note_seen(&[tokens[0].value.clone()], clock.now() + Duration::seconds(90)).unwrap();
    clock.advance(Duration::seconds(120));
    let leaving = AdmissionPolicy { abandon_after: Some(Duration::seconds(60)), ..policy(1) };
    assert_eq!(queue.admit(&leaving).unwrap().admitted(), 1);
    clock.advance(Duration::seconds(60));
    let outcome = queue.admit(&leaving).unwrap();
    assert_eq!((outcome.admitted(), outcome.abandoned()), (0, 3), "a tick that admits none");
    let waiting = format!("{{{}}}:waiting", ns.prefix);
    let len = || ns.connection().llen::<_, i64>(&waiting).unwrap();
    assert_eq!(queue.expire_tokens(10).unwrap(), 0, "nothing expired yet");
    assert_eq!(len(), 4, "behind an admitted token still ACTIVE");
    let found = queue.find(&tokens[0].value).unwrap().unwrap();
    assert_eq!((found.status, found.activated_at), (TokenStatus::Active, Some(clock.now() - Duration::seconds(60))));
    clock.advance(Duration::seconds(540));
    assert_eq!(queue.expire_tokens(10).unwrap(), 1, "the admitted one, not the abandoned ones");
    assert_eq!(len(), 0, "nothing left behind the cursor");
    assert_eq!(
        queue.find(&tokens[1].value).unwrap().unwrap().expired_reason,
        Some(domain::queue::ExpiredReason::Abandoned)
    );

    // A line whose only tick abandoned everyone: the sweep drops them all.
    let ns = Namespace::new();
    let queue = ns.queue(Arc::new(clock.clone()));
    for _ in 0..3 {
        queue.issue(user(), value(), clock.now()).unwrap();
    }
    clock.advance(Duration::seconds(120));
    assert_eq!(queue.admit(&leaving).unwrap().abandoned(), 3);
    assert_eq!(queue.expire_tokens(10).unwrap(), 0);
    assert_eq!(ns.connection().llen::<_, i64>(format!("{{{}}}:waiting", ns.prefix)).unwrap(), 0);
}
