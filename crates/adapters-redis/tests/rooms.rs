//! What only the Redis lines of rooms have: their keys (`{prefix:room}`, one cluster slot per
//! line), the draw in steps (claim, chunks, finish) raced by separate instances, joined by
//! issues while it runs, and taken over when its owner stops; tokens of another room answered
//! as unknown; presence and abandonment as stored. The port's behaviour itself is the rooms
//! conformance suite's (`conformance.rs`).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, reason = "tests")]

mod common;

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Duration as StdDuration;

use adapters_redis::testing::layout;
use adapters_redis::{DrawTuning, RedisQueue};
use common::Namespace;
use domain::clock::{Clock as _, ManualClock};
use domain::ids::UserId;
use domain::ports::{QueueLines as _, QueueStore, StoreError};
use domain::queue::{AdmissionOutcome, AdmissionPolicy, ExpiredReason, QueueToken, TokenStatus, TokenValue};
use domain::room::{drawn_positions, DrawOutcome, RoomId};
use port_tests::concurrency::race;
use redis::Commands as _;
use time::{Duration, OffsetDateTime};

fn user() -> UserId {
    UserId::from_uuid(uuid::Uuid::new_v4())
}

fn value(room: &RoomId) -> TokenValue {
    let mut bytes = [0_u8; 32];
    bytes[..16].copy_from_slice(uuid::Uuid::new_v4().as_bytes());
    bytes[16..].copy_from_slice(uuid::Uuid::new_v4().as_bytes());
    TokenValue::from_bytes(bytes).in_room(room)
}

fn tour() -> RoomId {
    RoomId::parse("tour").unwrap()
}

fn policy(batch: u32, abandon_after: Option<Duration>) -> AdmissionPolicy {
    AdmissionPolicy {
        batch,
        interval: Duration::seconds(60),
        active_ttl: Duration::seconds(600),
        max_active: None,
        abandon_after,
    }
}

/// A draw slowed down to `chunk` tokens per script and a pause between scripts.
fn slow(chunk: usize, pause_ms: u64) -> DrawTuning {
    DrawTuning { chunk, pause: StdDuration::from_millis(pause_ms), ..DrawTuning::default() }
}

/// The line of `room` on a queue of its own (a pool of its own: another instance).
fn instance(ns: &Namespace, clock: &ManualClock, room: &RoomId, tuning: DrawTuning) -> RedisQueue {
    ns.queue(Arc::new(clock.clone())).with_draw_tuning(tuning).line(room)
}

fn join(line: &dyn QueueStore, room: &RoomId, now: OffsetDateTime) -> QueueToken {
    line.issue(user(), value(room), now).unwrap().token
}

/// The WAITING list of `room`, as stored: arrival `seq`s in position order.
fn waiting_list(ns: &Namespace, room: &RoomId) -> Vec<u64> {
    layout::waiting(&mut ns.connection(), &ns.prefix, room).unwrap()
}

/// The draw's position table of `room`'s line, as stored (empty when there is none).
fn drawn_table(ns: &Namespace, room: &RoomId) -> Vec<u8> {
    let table: Option<Vec<u8>> = ns.connection().get(format!("{{{}:{room}}}:drawn", ns.prefix)).unwrap();
    table.unwrap_or_default()
}

/// The arrival `seq` of a token stored WAITING (a draw writes no token; its value names its
/// record by that `seq`), checking its record is as issued.
fn stored_seq(ns: &Namespace, t: &QueueToken) -> i64 {
    let stored = layout::stored(&mut ns.connection(), &ns.prefix, &t.value).unwrap().unwrap();
    assert_eq!((stored.status, stored.user), ("WAITING", t.user_id.as_uuid()), "the record as issued");
    i64::try_from(stored.seq).unwrap()
}

/// `seq` mapped through a raw position table (4 bytes big-endian at `4 * (seq - 1)`; 0 or past
/// the end: unchanged), as `drawn_seq` in prelude.lua does.
fn mapped(table: &[u8], seq: i64) -> i64 {
    let at = usize::try_from(seq - 1).unwrap() * 4;
    table.get(at..at + 4).map(|b| u32::from_be_bytes(b.try_into().unwrap())).filter(|&n| n != 0).map_or(seq, i64::from)
}

/// After a draw of `entrants` then `later` (`later` in issue order; every token as issued, so
/// with its arrival `seq`): every entrant at its drawn position, the others behind in order, in
/// the WAITING list, in the `seq` the adapter reads (`find`, `find_with_cursor`) and in the
/// raw position table; and no token's hash written (each keeps its arrival `seq`).
fn assert_drawn(ns: &Namespace, line: &dyn QueueStore, seed: u64, entrants: &[QueueToken], later: &[QueueToken]) {
    let room = line_room(entrants, later);
    // Entrant i in the order of their values takes drawn position i (`QueueStore::draw`).
    let mut entrants = entrants.to_vec();
    entrants.sort_by(|a, b| a.value.as_str().cmp(b.value.as_str()));
    let positions = drawn_positions(seed, entrants.len() as u64);
    let mut expected = vec![0; entrants.len()];
    for (t, p) in entrants.iter().zip(&positions) {
        expected[usize::try_from(*p).unwrap() - 1] = layout::seq_of(&t.value);
    }
    expected.extend(later.iter().map(|t| layout::seq_of(&t.value)));
    assert_eq!(waiting_list(ns, &room), expected, "the WAITING list is in the drawn order");
    let drawn = entrants
        .iter()
        .zip(positions.iter().map(|p| i64::try_from(*p).unwrap()))
        .chain(later.iter().zip((entrants.len() + 1..).map(|s| i64::try_from(s).unwrap())));
    let table = drawn_table(ns, &room);
    for (t, seq) in drawn {
        assert_eq!(line.find(&t.value).unwrap().unwrap().seq, seq, "entrants at their places, later tokens in order");
        assert_eq!(line.find_with_cursor(&t.value).unwrap().unwrap().0.seq, seq);
        assert_eq!(stored_seq(ns, t), t.seq, "the draw wrote no token's hash");
        assert_eq!(mapped(&table, t.seq), seq, "the table maps the arrival seq {}", t.seq);
    }
    // One entry per claimed token (arrival seqs 1..n here), the drawn seqs 1..n.
    let mut entries: Vec<u32> = table.chunks(4).map(|b| u32::from_be_bytes(b.try_into().unwrap())).collect();
    entries.sort_unstable();
    assert_eq!(table.len() % 4, 0);
    assert_eq!(entries, (1..=u32::try_from(table.len() / 4).unwrap()).collect::<Vec<_>>(), "a permutation");
}

fn line_room(entrants: &[QueueToken], later: &[QueueToken]) -> RoomId {
    entrants.iter().chain(later).next().map_or_else(RoomId::main, |t| t.value.room())
}

#[test]
fn two_instances_racing_a_draw_draw_once() {
    let ns = Namespace::new();
    let clock = ManualClock::at_epoch();
    let room = tour();
    let a = instance(&ns, &clock, &room, slow(7, 2));
    let b = instance(&ns, &clock, &room, slow(7, 2));
    let opens = clock.now() + Duration::seconds(10);
    let entrants: Vec<QueueToken> = (0..120).map(|_| join(&a, &room, clock.now())).collect();
    clock.advance(Duration::seconds(10));
    let results = race(2, |i| if i == 0 { a.draw(opens, 11).unwrap() } else { b.draw(opens, 22).unwrap() });
    let records: Vec<_> = results
        .iter()
        .map(|r| match r {
            DrawOutcome::Drawn { record, fresh } => (*record, *fresh),
            DrawOutcome::NotDue => panic!("due"),
        })
        .collect();
    assert_eq!(records.iter().filter(|(_, fresh)| *fresh).count(), 1, "{records:?}");
    assert_eq!(records[0].0, records[1].0, "one record for both");
    let record = records[0].0;
    assert!([11, 22].contains(&record.seed));
    assert_eq!((record.entrants, record.at), (120, clock.now()));
    assert_eq!(a.cursor().unwrap().draw, Some(record));
    assert_eq!(b.cursor().unwrap().draw, Some(record));
    let seqs: BTreeSet<i64> = entrants.iter().map(|t| b.find(&t.value).unwrap().unwrap().seq).collect();
    assert_eq!(seqs, (1..=120).collect(), "a permutation");
    assert_drawn(&ns, &a, record.seed, &entrants, &[]);
    // Nothing of the draw is left behind but its record.
    let mut con = ns.connection();
    let cursor: Vec<String> = con.hkeys(format!("{{{}:{room}}}:cursor", ns.prefix)).unwrap();
    assert!(
        cursor
            .iter()
            .all(|f| !f.starts_with("draw_") || ["draw_at", "draw_entrants", "draw_seed"].contains(&f.as_str())),
        "{cursor:?}"
    );
    assert!(!con.exists::<_, bool>(format!("{{{}:{room}}}:staging", ns.prefix)).unwrap());
    assert_eq!(drawn_table(&ns, &room).len(), 4 * 120, "the position table stays: it holds the order");
}

#[test]
fn issues_during_a_chunked_draw_are_kept_after_the_entrants() {
    let ns = Namespace::new();
    let clock = ManualClock::at_epoch();
    let room = tour();
    let line = instance(&ns, &clock, &room, slow(10, 5));
    let other = instance(&ns, &clock, &room, DrawTuning::default());
    let opens = clock.now() + Duration::seconds(10);
    let before: Vec<QueueToken> = (0..100).map(|_| join(&line, &room, clock.now())).collect();
    clock.advance(Duration::seconds(10));
    // Issued after the opening but before the draw: not entrants, first behind them.
    let early: Vec<QueueToken> = (0..5).map(|_| join(&line, &room, clock.now())).collect();
    let results = race(2, |i| {
        if i == 0 {
            (vec![line.draw(opens, 5).unwrap()], Vec::new())
        } else {
            // Joins while the draw runs (10 chunks, 5 ms apart), on another instance.
            let joined = (0..40)
                .map(|_| {
                    let t = join(&other, &room, clock.now());
                    std::thread::sleep(StdDuration::from_millis(1));
                    t
                })
                .collect();
            (Vec::new(), joined)
        }
    });
    let DrawOutcome::Drawn { record, fresh: true } = results[0].0[0] else { panic!("{results:?}") };
    assert_eq!(record.entrants, 100);
    // Every token after the entrants, in issue order (the `seq` they were issued with).
    let mut later: Vec<QueueToken> = early.iter().chain(&results[1].1).cloned().collect();
    later.sort_by_key(|t| t.seq);
    assert_eq!(later.len(), 45, "none lost");
    assert_eq!(
        later[..5].iter().map(|t| &t.value).collect::<Vec<_>>(),
        early.iter().map(|t| &t.value).collect::<Vec<_>>()
    );
    assert_eq!(waiting_list(&ns, &room).len(), 145);
    assert_drawn(&ns, &line, record.seed, &before, &later);
    assert_eq!(line.stats().unwrap().issued_through, 145);
}

#[test]
fn admission_waits_while_a_draw_is_claimed() {
    let ns = Namespace::new();
    let clock = ManualClock::at_epoch();
    let room = tour();
    let stopping = DrawTuning { chunk: 10, stop_after_chunks: Some(2), ..DrawTuning::default() };
    let line = instance(&ns, &clock, &room, stopping);
    let opens = clock.now() + Duration::seconds(1);
    let tokens: Vec<QueueToken> = (0..50).map(|_| join(&line, &room, clock.now())).collect();
    clock.advance(Duration::seconds(1));
    assert!(matches!(line.draw(opens, 3), Err(StoreError::Internal(_))), "stopped half-way");
    assert_eq!(line.cursor().unwrap().draw, None, "not recorded");
    // Two chunks of the position table written, not in force: every token shows its arrival seq.
    assert_eq!(drawn_table(&ns, &room).len(), 4 * 20);
    for t in &tokens {
        assert_eq!(line.find(&t.value).unwrap().unwrap().seq, t.seq);
        assert_eq!(line.find_with_cursor(&t.value).unwrap().unwrap().0.seq, t.seq);
    }
    assert_eq!(line.admit(&policy(10, None)).unwrap(), AdmissionOutcome::Busy);
    assert_eq!(line.cursor().unwrap().admitted_through, 0);
}

#[test]
fn a_draw_whose_owner_stopped_is_finished_by_another_instance_after_its_lease() {
    let ns = Namespace::new();
    let clock = ManualClock::at_epoch();
    let room = tour();
    let lease = StdDuration::from_secs(10);
    let dying = DrawTuning { chunk: 10, lease, stop_after_chunks: Some(3), ..DrawTuning::default() };
    let a = instance(&ns, &clock, &room, dying);
    let impatient = DrawTuning { chunk: 7, lease, wait: StdDuration::from_millis(100), ..DrawTuning::default() };
    let b = instance(&ns, &clock, &room, impatient);
    let opens = clock.now() + Duration::seconds(1);
    let entrants: Vec<QueueToken> = (0..95).map(|_| join(&a, &room, clock.now())).collect();
    clock.advance(Duration::seconds(1));
    let claimed_at = clock.now();
    assert!(a.draw(opens, 1234).is_err(), "A stops after 3 chunks of 10");
    let staged: i64 = ns.connection().llen(format!("{{{}:{room}}}:staging", ns.prefix)).unwrap();
    assert_eq!(staged, 30);

    // Within A's lease B waits for it, then gives up.
    assert!(matches!(b.draw(opens, 999), Err(StoreError::Timeout(_))));
    // Issued while the draw is stuck: kept behind.
    let late = join(&b, &room, clock.now());

    clock.advance(Duration::seconds(11));
    let outcome = b.draw(opens, 999).unwrap();
    let DrawOutcome::Drawn { record, fresh: true } = outcome else { panic!("{outcome:?}") };
    assert_eq!((record.seed, record.entrants, record.at), (1234, 95, claimed_at), "A's draw, finished");
    assert_drawn(&ns, &b, 1234, &entrants, &[late]);
    // A, back, finds it done.
    assert_eq!(a.draw(opens, 1234).unwrap(), DrawOutcome::Drawn { record, fresh: false });
    assert_eq!(b.admit(&policy(10, None)).unwrap(), AdmissionOutcome::Admitted(10));
}

#[test]
fn a_draw_of_an_empty_line_is_recorded_at_once() {
    let ns = Namespace::new();
    let clock = ManualClock::at_epoch();
    let room = tour();
    let line = instance(&ns, &clock, &room, DrawTuning::default());
    let opens = clock.now() + Duration::seconds(5);
    assert_eq!(line.draw(opens, 8).unwrap(), DrawOutcome::NotDue);
    clock.advance(Duration::seconds(5));
    let DrawOutcome::Drawn { record, fresh: true } = line.draw(opens, 8).unwrap() else { panic!() };
    assert_eq!((record.entrants, record.seed), (0, 8));
    let t = join(&line, &room, clock.now());
    assert_eq!(t.seq, 1);
}

#[test]
fn every_key_of_a_room_shares_its_hash_tag() {
    let ns = Namespace::new();
    let clock = ManualClock::at_epoch();
    let base = ns.queue(Arc::new(clock.clone()));
    let lines = base.lines();
    let room = tour();
    let line = lines.line(&room);
    let opens = clock.now() + Duration::seconds(1);
    let a = line.issue(user(), value(&room), clock.now()).unwrap().token;
    let b = line.issue(user(), value(&room), clock.now()).unwrap().token;
    clock.advance(Duration::seconds(1));
    assert!(matches!(line.draw(opens, 1).unwrap(), DrawOutcome::Drawn { fresh: true, .. }));
    line.note_seen(std::slice::from_ref(&a.value), clock.now()).unwrap();
    assert_eq!(line.admit(&policy(1, Some(Duration::seconds(30)))).unwrap().admitted(), 1);
    let paid = if line.find(&a.value).unwrap().unwrap().status == TokenStatus::Active { &a } else { &b };
    line.use_up(&paid.value, clock.now()).unwrap();
    let main = base.issue(user(), value(&RoomId::main()), clock.now()).unwrap().token;

    let keys = ns.keys();
    let tag = format!("{{{}:tour}}:", ns.prefix);
    let in_room: Vec<&String> = keys.iter().filter(|k| k.starts_with(&tag)).collect();
    assert!(in_room.len() >= 7, "{keys:?}");
    let main_tag = format!("{{{}}}:", ns.prefix);
    assert!(keys.iter().all(|k| k.starts_with(&tag) || k.starts_with(&main_tag)), "{keys:?}");
    let (main_bucket, _, _) = layout::keys_of(&ns.prefix, &main.value).unwrap();
    assert!(main_bucket.starts_with(&main_tag) && keys.contains(&main_bucket), "main keeps its namespace");
    // One hash tag: the text between the first `{` and the next `}`.
    let hash_tag = |k: &str| k[1..k.find('}').unwrap()].to_owned();
    let tags: BTreeSet<String> = in_room.iter().map(|k| hash_tag(k)).collect();
    assert_eq!(tags, BTreeSet::from([format!("{}:tour", ns.prefix)]));
    assert_eq!(base.line(&room).namespace(), format!("{{{}:tour}}", ns.prefix));
}

#[test]
fn one_live_token_per_user_per_room() {
    let ns = Namespace::new();
    let clock = ManualClock::at_epoch();
    let base = ns.queue(Arc::new(clock.clone()));
    let (room, other) = (tour(), RoomId::parse("other").unwrap());
    let (line, other_line) = (base.line(&room), base.line(&other));
    let u = user();
    let results = race(32, |i| {
        if i % 2 == 0 {
            line.issue(u, value(&room), clock.now()).unwrap()
        } else {
            other_line.issue(u, value(&other), clock.now()).unwrap()
        }
    });
    assert_eq!(results.iter().filter(|r| r.created).count(), 2, "one per room");
    let values: BTreeSet<&str> = results.iter().map(|r| r.token.value.as_str()).collect();
    assert_eq!(values.len(), 2);
    assert!(results.iter().all(|r| r.token.seq == 1));
    let in_main = base.issue(u, value(&RoomId::main()), clock.now()).unwrap();
    assert!(in_main.created, "main is a line of its own too");
    assert_eq!(line.stats().unwrap().issued_through, 1);
}

#[test]
fn a_token_of_another_room_is_unknown_here() {
    let ns = Namespace::new();
    let clock = ManualClock::at_epoch();
    let base = ns.queue(Arc::new(clock.clone()));
    let (room, other) = (tour(), RoomId::parse("other").unwrap());
    let line = base.line(&room);
    let mine = join(&line, &room, clock.now());
    assert_eq!(line.admit(&policy(1, None)).unwrap(), AdmissionOutcome::Admitted(1));
    let elsewhere = base.line(&other);
    // The same secret in another room, and the bare (main) form.
    let bare = TokenValue::parse(mine.value.as_str().split_once('.').unwrap().1).unwrap();
    for v in [mine.value.clone().in_room(&other), bare] {
        let line_of_v = if v.room().is_main() { base.clone() } else { elsewhere.clone() };
        assert_eq!(line_of_v.find(&v).unwrap(), None);
        assert_eq!(line.find(&v).unwrap(), None, "a value of another line is none of this one's");
        assert_eq!(line.find_with_cursor(&v).unwrap(), None);
        line.use_up(&v, clock.now()).unwrap();
        line_of_v.use_up(&mine.value, clock.now()).unwrap();
    }
    assert_eq!(line.find(&mine.value).unwrap().unwrap().status, TokenStatus::Active, "untouched");
    assert!(matches!(elsewhere.issue(user(), value(&room), clock.now()), Err(StoreError::Internal(_))));
}

#[test]
fn sights_and_reasons_are_stored_in_the_token() {
    let ns = Namespace::new();
    let clock = ManualClock::at_epoch();
    let cfg = ns.config();
    let line = RedisQueue::new(&cfg).unwrap().with_clock(Arc::new(clock.clone())).line(&tour());
    let room = tour();
    let t: Vec<QueueToken> = (0..4).map(|_| join(&line, &room, clock.now())).collect();
    let mut con = ns.connection();
    let prefix = ns.prefix.clone();
    let mut seen = |t: &QueueToken| layout::stored(&mut con, &prefix, &t.value).unwrap().and_then(|t| t.seen);
    clock.advance(Duration::seconds(20));
    let at = i64::try_from(clock.now().unix_timestamp_nanos() / 1_000).unwrap();
    line.note_seen(
        &[
            t[1].value.clone(),
            t[2].value.clone(),
            value(&room),
            TokenValue::parse(t[0].value.as_str().split_once('.').unwrap().1).unwrap(),
        ],
        clock.now(),
    )
    .unwrap();
    assert_eq!(seen(&t[1]), Some(at));
    // A sight only moves forward.
    line.note_seen(std::slice::from_ref(&t[1].value), clock.now() - Duration::seconds(10)).unwrap();
    assert_eq!(seen(&t[1]), Some(at));
    assert_eq!(seen(&t[0]), None, "a value of main is not this line's");

    clock.advance(Duration::seconds(15)); // 35 s after the issue, 15 s after the sights
    let outcome = line.admit(&policy(2, Some(Duration::seconds(30)))).unwrap();
    assert_eq!(outcome, AdmissionOutcome::AdmittedPresent { admitted: 2, abandoned: 1 });
    let abandoned = line.find(&t[0].value).unwrap().unwrap();
    assert_eq!(
        (abandoned.status, abandoned.expired_reason, abandoned.expires_at),
        (TokenStatus::Expired, Some(ExpiredReason::Abandoned), Some(clock.now()))
    );
    let ttl: i64 = ns.connection().pttl(layout::keys_of(&ns.prefix, &t[0].value).unwrap().2).unwrap();
    assert!(ttl > 0, "retired like an expired token");
    assert_eq!(line.stats().unwrap().abandoned, 1);
    assert_eq!(line.cursor().unwrap().admitted_through, 3, "over both");
    // note_seen leaves tokens that are no longer WAITING alone.
    line.note_seen(std::slice::from_ref(&t[1].value), clock.now() + Duration::seconds(1)).unwrap();
    assert_eq!(seen(&t[1]), Some(at));

    line.use_up(&t[1].value, clock.now()).unwrap();
    assert_eq!(line.find(&t[1].value).unwrap().unwrap().expired_reason, Some(ExpiredReason::Paid));
    clock.advance(Duration::seconds(600));
    assert_eq!(line.expire_tokens(10).unwrap(), 1);
    assert_eq!(line.find(&t[2].value).unwrap().unwrap().expired_reason, Some(ExpiredReason::Ttl));
    assert_eq!(line.find(&t[3].value).unwrap().unwrap().expired_reason, None);
}

#[test]
fn entrants_are_the_tokens_issued_before_the_opening_whatever_the_callers_clocks() {
    let ns = Namespace::new();
    let clock = ManualClock::at_epoch();
    let room = tour();
    let opens = clock.now() + Duration::seconds(100);
    // Instances whose clocks disagree by a few seconds: issue times go back and forth around
    // the opening (at most 6 s back), so the draw bisects the line and reads the times of the
    // tokens near the opening only.
    let offsets = [-90, -80, -60, -50, -40, -3, 2, -1, 1, 4, -2, 0, 3, -1, 50, 60, 70, 80, 90];
    for chunk in [3, 1000] {
        let line = instance(&ns, &clock, &room, slow(chunk, 0)).line(&RoomId::parse(&format!("r{chunk}")).unwrap());
        let room = line.room().clone();
        let tokens: Vec<QueueToken> =
            offsets.iter().map(|s| join(&line, &room, opens + Duration::seconds(*s))).collect();
        let (entrants, later): (Vec<QueueToken>, Vec<QueueToken>) =
            tokens.into_iter().partition(|t| t.issued_at < opens);
        clock.advance(Duration::seconds(200));
        let DrawOutcome::Drawn { record, fresh: true } = line.draw(opens, 77).unwrap() else { panic!() };
        assert_eq!(record.entrants, entrants.len() as u64);
        assert_drawn(&ns, &line, 77, &entrants, &later);
    }
}

#[test]
fn a_line_without_the_issue_times_record_is_drawn_by_reading_every_token() {
    let ns = Namespace::new();
    let clock = ManualClock::at_epoch();
    let room = tour();
    let line = instance(&ns, &clock, &room, slow(4, 0));
    let opens = clock.now() + Duration::seconds(10);
    let offsets = [-9, 5, -8, -7, 3, -1, 2, -6, 1, -2];
    let tokens: Vec<QueueToken> = offsets.iter().map(|s| join(&line, &room, opens + Duration::seconds(*s))).collect();
    // As a line written before `imax`/`iback` existed.
    let _: () = ns.connection().hdel(format!("{{{}:{room}}}:cursor", ns.prefix), &["imax", "iback"]).unwrap();
    let (entrants, later): (Vec<QueueToken>, Vec<QueueToken>) = tokens.into_iter().partition(|t| t.issued_at < opens);
    clock.advance(Duration::seconds(10));
    let DrawOutcome::Drawn { record, fresh: true } = line.draw(opens, 5).unwrap() else { panic!() };
    assert_eq!(record.entrants, 6);
    assert_drawn(&ns, &line, 5, &entrants, &later);
}

#[test]
fn a_draw_read_a_token_at_a_time_renews_its_lease_and_draws_right() {
    let ns = Namespace::new();
    let clock = ManualClock::at_epoch();
    let room = tour();
    // Without `iback` every slice is a script reading issue times: 120 of them, two renewals.
    let line = instance(&ns, &clock, &room, slow(1, 0));
    let opens = clock.now() + Duration::seconds(1);
    let tokens: Vec<QueueToken> = (0..120).map(|_| join(&line, &room, clock.now())).collect();
    let _: () = ns.connection().hdel(format!("{{{}:{room}}}:cursor", ns.prefix), &["imax", "iback"]).unwrap();
    clock.advance(Duration::seconds(1));
    let DrawOutcome::Drawn { record, fresh: true } = line.draw(opens, 42).unwrap() else { panic!() };
    assert_eq!(record.entrants, 120);
    assert_drawn(&ns, &line, 42, &tokens, &[]);
}

#[test]
fn every_read_of_a_drawn_token_maps_its_arrival_seq() {
    let ns = Namespace::new();
    let clock = ManualClock::at_epoch();
    let room = tour();
    let line = instance(&ns, &clock, &room, slow(4, 0));
    let opens = clock.now() + Duration::seconds(1);
    let users: Vec<UserId> = (0..30).map(|_| user()).collect();
    let tokens: Vec<QueueToken> =
        users.iter().map(|u| line.issue(*u, value(&room), clock.now()).unwrap().token).collect();
    clock.advance(Duration::seconds(1));
    let DrawOutcome::Drawn { record, fresh: true } = line.draw(opens, 31).unwrap() else { panic!() };
    assert_drawn(&ns, &line, record.seed, &tokens, &[]);
    let place = |t: &QueueToken| line.find(&t.value).unwrap().unwrap().seq;
    // The issue that finds the user's live token answers its drawn seq, as a read does.
    for (u, t) in users.iter().zip(&tokens) {
        let again = line.issue(*u, value(&room), clock.now()).unwrap();
        assert!(!again.created);
        assert_eq!((&again.token.value, again.token.seq), (&t.value, place(t)));
        assert_eq!(again.cursor.draw, Some(record));
    }
    // Issued after the draw: its own seq, past the table.
    let late = join(&line, &room, clock.now());
    assert_eq!((late.seq, place(&late), stored_seq(&ns, &late)), (31, 31, 31));
    // Admission takes the drawn places in order (it moves the cursor, reads no seq).
    assert_eq!(line.admit(&policy(10, None)).unwrap(), AdmissionOutcome::Admitted(10));
    for t in &tokens {
        let found = line.find(&t.value).unwrap().unwrap();
        let expected = if found.seq <= 10 { TokenStatus::Active } else { TokenStatus::Waiting };
        assert_eq!(found.status, expected, "seq {}", found.seq);
        let (with_cursor, cursor) = line.find_with_cursor(&t.value).unwrap().unwrap();
        assert_eq!((with_cursor.seq, cursor.admitted_through), (found.seq, 10));
    }
}

#[test]
fn a_line_whose_seqs_are_not_in_list_order_is_not_drawn() {
    let ns = Namespace::new();
    let clock = ManualClock::at_epoch();
    let room = tour();
    let line = instance(&ns, &clock, &room, DrawTuning::default());
    let opens = clock.now() + Duration::seconds(1);
    let tokens: Vec<QueueToken> = (0..5).map(|_| join(&line, &room, clock.now())).collect();
    // The last token's seq in the list off by two: the claim cannot derive the seqs from it.
    assert_eq!(layout::seq_of(&tokens[4].value), 5);
    let waiting = format!("{}:waiting", layout::namespace(&ns.prefix, &room));
    let _: () = ns.connection().lset(&waiting, 4, 7).unwrap();
    clock.advance(Duration::seconds(1));
    assert!(matches!(line.draw(opens, 1), Err(StoreError::Internal(_))));
    assert_eq!(line.cursor().unwrap().draw, None);
    assert_eq!(line.admit(&policy(10, None)).unwrap(), AdmissionOutcome::Admitted(5), "nothing claimed");
}

/// In a drawn line, an admitted token is derived by its drawn place, not its arrival: the ten
/// first places read ACTIVE since the tick, a payment uses up one of them by that place, a
/// sight of one is not noted (no longer WAITING), and the sweep writes the other nine in place
/// order once their TTL ran out, leaving the list to the WAITING ones.
#[test]
fn admitted_tokens_of_a_drawn_line_are_derived_and_swept_by_their_drawn_place() {
    let ns = Namespace::new();
    let clock = ManualClock::at_epoch();
    let room = tour();
    let line = instance(&ns, &clock, &room, slow(7, 0));
    let opens = clock.now() + Duration::seconds(1);
    let tokens: Vec<QueueToken> = (0..30).map(|_| join(&line, &room, clock.now())).collect();
    clock.advance(Duration::seconds(1));
    assert!(matches!(line.draw(opens, 5).unwrap(), DrawOutcome::Drawn { fresh: true, .. }));
    let tick = clock.now();
    assert_eq!(line.admit(&policy(10, None)).unwrap(), AdmissionOutcome::Admitted(10));
    let find = |t: &QueueToken| line.find(&t.value).unwrap().unwrap();
    let (admitted, waiting): (Vec<&QueueToken>, Vec<&QueueToken>) = tokens.iter().partition(|t| find(t).seq <= 10);
    assert_eq!(admitted.len(), 10);
    assert!(admitted.iter().any(|t| stored_seq(&ns, t) > 10), "some drawn ahead of their arrival");
    for t in &admitted {
        let found = find(t);
        assert_eq!(
            (found.status, found.activated_at, found.expires_at),
            (TokenStatus::Active, Some(tick), Some(tick + Duration::seconds(600)))
        );
    }
    assert!(waiting.iter().all(|t| find(t).status == TokenStatus::Waiting));

    clock.advance(Duration::seconds(5));
    line.use_up(&admitted[0].value, clock.now()).unwrap();
    assert_eq!(find(admitted[0]).expired_reason, Some(ExpiredReason::Paid));
    line.note_seen(&[admitted[1].value.clone(), waiting[0].value.clone()], clock.now()).unwrap();
    let seen = |t: &QueueToken| -> Option<i64> {
        layout::stored(&mut ns.connection(), &ns.prefix, &t.value).unwrap().and_then(|t| t.seen)
    };
    assert_eq!((seen(admitted[1]).is_some(), seen(waiting[0]).is_some()), (false, true));
    assert_eq!(line.stats().unwrap().active, 9);

    clock.set(tick + Duration::seconds(600));
    assert_eq!(line.expire_tokens(4).unwrap(), 4);
    assert_eq!(line.expire_tokens(100).unwrap(), 5);
    assert_eq!(line.expire_tokens(100).unwrap(), 0);
    for t in &admitted[1..] {
        let found = find(t);
        assert_eq!(
            (found.status, found.expired_reason, found.activated_at),
            (TokenStatus::Expired, Some(ExpiredReason::Ttl), Some(tick))
        );
    }
    let by_place: std::collections::BTreeMap<i64, u64> =
        waiting.iter().map(|t| (find(t).seq, layout::seq_of(&t.value))).collect();
    assert_eq!(
        waiting_list(&ns, &room),
        by_place.into_values().collect::<Vec<_>>(),
        "the WAITING ones, in place order"
    );
    assert_eq!(line.admit(&policy(10, None)).unwrap(), AdmissionOutcome::Admitted(10));
    assert!(waiting.iter().all(|t| (find(t).status == TokenStatus::Active) == (find(t).seq <= 20)));
}

/// Nothing is admitted before a draw (the port's rule). Admitted tokens stay at the head of
/// the WAITING list until swept, and a draw would reorder them: the claim refuses instead,
/// leaving the line and its admitted tokens as they were.
#[test]
fn a_draw_is_refused_while_admitted_tokens_are_in_the_list() {
    let ns = Namespace::new();
    let clock = ManualClock::at_epoch();
    let room = tour();
    let line = instance(&ns, &clock, &room, DrawTuning::default());
    let opens = clock.now() + Duration::seconds(1);
    let tokens: Vec<QueueToken> = (0..5).map(|_| join(&line, &room, clock.now())).collect();
    assert_eq!(line.admit(&policy(2, None)).unwrap(), AdmissionOutcome::Admitted(2));
    clock.advance(Duration::seconds(1));
    assert!(matches!(line.draw(opens, 1), Err(StoreError::Internal(_))));
    assert_eq!(line.cursor().unwrap().draw, None);
    let statuses: Vec<TokenStatus> = tokens.iter().map(|t| line.find(&t.value).unwrap().unwrap().status).collect();
    assert_eq!(
        statuses,
        [TokenStatus::Active, TokenStatus::Active, TokenStatus::Waiting, TokenStatus::Waiting, TokenStatus::Waiting]
    );
}
