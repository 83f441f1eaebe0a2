//! Real threads racing on one Redis: one user's issues, many users' issues, several instances'
//! admission ticks (on an injected store clock and on Redis' own `TIME`), payments with one
//! token, and a payment's use-up against a WAITING token of the payer. Each asserts the
//! invariant (one token, gapless numbers, at most N per interval, one payment), never a
//! timing.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, reason = "tests")]

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use adapters_local::{OsRandom, SystemClock};
use adapters_memory::MemoryStore;
use common::{ports_on, Namespace, RedisHarness};
use domain::clock::{Clock, ManualClock, SkewedClock};
use domain::error::PayError;
use domain::ids::UserId;
use domain::ports::QueueStore;
use domain::queue::{AdmissionOutcome, AdmissionPolicy, QueueSettings, QueueToken, TokenStatus, TokenValue};
use domain::random::Randomness as _;
use domain::reservation::ReservationStatus;
use domain::service::{Policy, Ports, Ticketing};
use port_tests::concurrency::race;
use port_tests::fixture::{Admission, Fixture};
use time::{Duration, OffsetDateTime};

fn settings(batch: u32, interval: Duration) -> QueueSettings {
    QueueSettings {
        paused: false,
        admission: AdmissionPolicy {
            batch,
            interval,
            active_ttl: Duration::seconds(600),
            max_active: None,
            abandon_after: None,
        },
    }
}

/// The batches of activation: (activation time, how many tokens it activated), in time order.
fn batches(queue: &dyn QueueStore, tokens: &[QueueToken]) -> Vec<(OffsetDateTime, usize)> {
    let mut by_time: BTreeMap<OffsetDateTime, usize> = BTreeMap::new();
    for t in tokens {
        if let Some(at) = queue.find(&t.value).unwrap().unwrap().activated_at {
            *by_time.entry(at).or_default() += 1;
        }
    }
    by_time.into_iter().collect()
}

/// At most `n` per batch, batches at least `interval` apart, and the activated tokens are the
/// oldest (FIFO): what "at most N per interval over all instances" means, read from storage.
fn assert_at_most_n_per_interval(
    queue: &dyn QueueStore,
    tokens: &[QueueToken],
    n: usize,
    interval: Duration,
) -> Vec<(OffsetDateTime, usize)> {
    let batches = batches(queue, tokens);
    assert!(batches.iter().all(|(_, k)| *k <= n), "a batch over N = {n}: {batches:?}");
    assert!(batches.windows(2).all(|w| w[1].0 - w[0].0 >= interval), "batches closer than {interval}: {batches:?}");
    let admitted: usize = batches.iter().map(|(_, k)| k).sum();
    let active: Vec<bool> =
        tokens.iter().map(|t| queue.find(&t.value).unwrap().unwrap().activated_at.is_some()).collect();
    assert_eq!(active, (0..tokens.len()).map(|i| i < admitted).collect::<Vec<_>>(), "strictly FIFO");
    assert_eq!(queue.cursor().unwrap().admitted_through, i64::try_from(admitted).unwrap());
    batches
}

#[test]
fn sixty_four_threads_issuing_for_one_user_store_one_token_and_burn_no_number() {
    let ns = Namespace::new();
    let clock = ManualClock::at_epoch();
    let queue = ns.queue(Arc::new(clock.clone()));
    let user = UserId::from_uuid(OsRandom.uuid());
    let results = race(64, |_| queue.issue(user, OsRandom.token(), clock.now()).unwrap());
    assert_eq!(results.iter().filter(|r| r.created).count(), 1);
    let values: BTreeSet<&str> = results.iter().map(|r| r.token.value.as_str()).collect();
    assert_eq!(values.len(), 1, "one token");
    assert_eq!(queue.stats().unwrap().issued_through, 1, "the 63 others took no number");
    assert_eq!(queue.issue(UserId::from_uuid(OsRandom.uuid()), OsRandom.token(), clock.now()).unwrap().token.seq, 2);
}

#[test]
fn many_users_issuing_from_many_threads_get_one_token_each_numbered_gaplessly() {
    const THREADS: usize = 16;
    const USERS: usize = 50;
    let ns = Namespace::new();
    let clock = ManualClock::at_epoch();
    let queue = ns.queue(Arc::new(clock.clone()));
    let users: Vec<UserId> = (0..USERS).map(|_| UserId::from_uuid(OsRandom.uuid())).collect();
    // Every thread issues for every user, each starting at another user.
    let results = race(THREADS, |t| {
        (0..USERS)
            .map(|i| queue.issue(users[(i + t * 3) % USERS], OsRandom.token(), clock.now()).unwrap())
            .collect::<Vec<_>>()
    });
    let all: Vec<_> = results.into_iter().flatten().collect();
    assert_eq!(all.iter().filter(|r| r.created).count(), USERS);
    let mut per_user: BTreeMap<UserId, BTreeSet<String>> = BTreeMap::new();
    for r in &all {
        per_user.entry(r.token.user_id).or_default().insert(r.token.value.as_str().to_owned());
    }
    assert!(per_user.values().all(|v| v.len() == 1), "one token per user");
    let seqs: BTreeSet<i64> = all.iter().map(|r| r.token.seq).collect();
    assert_eq!(seqs, (1..=i64::try_from(USERS).unwrap()).collect(), "gapless");
    let stats = queue.stats().unwrap();
    assert_eq!((stats.issued_through, stats.waiting), (50, 50));
}

/// Two instances sharing one Redis (and one database, here the memory store), their callers'
/// clocks `offset` apart, both checking every few seconds from two threads each: together
/// they admit at most N per interval of the store's clock.
fn two_instances_admit_at_most_n_per_interval(offset: Duration) {
    const N: u32 = 3;
    let interval = Duration::seconds(20);
    let ns = Namespace::new();
    let store_clock = ManualClock::at_epoch();
    let memory = MemoryStore::with_settings(settings(N, interval));
    let instance = |caller: Arc<dyn Clock>| {
        let ports = ports_on(&ns, &memory, &store_clock);
        Ticketing::new(Ports { clock: caller, ..ports }, Policy::default())
    };
    let a = instance(Arc::new(store_clock.clone()));
    let b = instance(Arc::new(SkewedClock::new(Arc::new(store_clock.clone()), offset)));
    let tokens: Vec<QueueToken> =
        (0..40).map(|_| a.issue_token(UserId::from_uuid(OsRandom.uuid())).unwrap().view.token).collect();

    let mut admitted = 0;
    for _ in 0..30 {
        store_clock.advance(Duration::seconds(3));
        let apps = [&a, &b, &a, &b];
        for outcome in race(4, |i| apps[i].admit().unwrap()) {
            match outcome {
                AdmissionOutcome::Admitted(n) => admitted += n,
                AdmissionOutcome::NotDue { wait } => assert!(wait > Duration::ZERO && wait <= interval),
                other => panic!("unexpected {other:?}"),
            }
        }
    }
    let batches = assert_at_most_n_per_interval(a.ports().queue.as_ref(), &tokens, N as usize, interval);
    assert_eq!(admitted, batches.iter().map(|(_, k)| *k as u64).sum::<u64>(), "each admission counted once");
    // 90 s of store time, one batch due every 20 s (at 3 s steps: 3, 24, 45, 66, 87).
    assert_eq!(batches.len(), 5, "{batches:?}");
}

#[test]
fn two_instances_admit_at_most_n_per_interval_of_the_store_clock() {
    two_instances_admit_at_most_n_per_interval(Duration::ZERO);
}

#[test]
fn two_instances_whose_clocks_are_half_an_interval_apart_admit_at_most_n_per_interval() {
    two_instances_admit_at_most_n_per_interval(Duration::seconds(10));
}

#[test]
fn two_instances_whose_clocks_are_30_s_apart_admit_at_most_n_per_interval() {
    two_instances_admit_at_most_n_per_interval(Duration::seconds(30));
    two_instances_admit_at_most_n_per_interval(Duration::seconds(-30));
}

/// Production timing: Redis' own `TIME`, a 1 s interval, two instances (callers' clocks 30 s
/// apart, which admission ignores) hammering admission for about 3 s of Redis' clock. What is
/// asserted is read from storage (the activation times of the tokens): counts per interval,
/// not how long anything took.
#[test]
fn two_instances_on_redis_time_admit_at_most_n_per_interval() {
    const N: u32 = 3;
    let interval = Duration::seconds(1);
    let ns = Namespace::new();
    let memory = MemoryStore::with_settings(settings(N, interval));
    let instance = |caller: Arc<dyn Clock>| {
        let queue: Arc<dyn QueueStore> = Arc::new(ns.queue_on_server_time());
        let ports = Ports { queue, ..memory.ports(caller.clone(), Arc::new(OsRandom)) };
        Ticketing::new(ports, Policy::default())
    };
    let a = instance(Arc::new(SystemClock));
    let b = instance(Arc::new(SkewedClock::new(Arc::new(SystemClock), Duration::seconds(30))));
    let tokens: Vec<QueueToken> =
        (0..60).map(|_| a.issue_token(UserId::from_uuid(OsRandom.uuid())).unwrap().view.token).collect();

    let start = a.ports().queue.stats().unwrap().now;
    let until = start + Duration::milliseconds(3_200);
    let apps = [&a, &b, &a, &b];
    race(4, |i| {
        // Until Redis' clock (read through `stats`) passes the end; paced so four threads do
        // not spin on two cores.
        while apps[i].ports().queue.stats().unwrap().now < until {
            apps[i].admit().unwrap();
            std::thread::sleep(std::time::Duration::from_millis(5));
        }
    });
    let batches = assert_at_most_n_per_interval(a.ports().queue.as_ref(), &tokens, N as usize, interval);
    assert!(batches.len() >= 2, "admission ran in several intervals: {batches:?}");
    assert!(batches.iter().all(|(at, _)| *at >= start && *at <= until + interval), "{batches:?}");
}

/// Two instances (two pools on one Redis, one shared payment store) paying with one ACTIVE
/// token for four held seats at once: exactly one payment, the others `TOKEN_EXPIRED`, and the
/// token is EXPIRED in Redis at the payment's time.
#[test]
fn concurrent_payments_with_one_token_from_two_instances_pay_once() {
    let fx = Fixture::<RedisHarness>::seeded();
    let second = Ticketing::new(
        Ports { queue: Arc::new(fx.harness.namespace.queue(Arc::new(fx.clock.clone()))), ..fx.ports.clone() },
        Policy::default(),
    );
    for round in 0..5_u32 {
        let who = fx.active_user();
        fx.charge(who.user_id(), 10_000_000);
        let holds: Vec<_> = (1..=4).map(|n| fx.hold(&who, 0, n + 4 * round)).collect();
        let apps = [&fx.app, &second];
        let results = race(holds.len(), |i| apps[i % 2].pay(who.token().value.as_str(), holds[i].id, None));
        let winners: Vec<_> = results.iter().filter_map(|r| r.as_ref().ok()).collect();
        assert_eq!(winners.len(), 1, "round {round}: {results:?}");
        assert!(results.iter().filter(|r| r.is_err()).all(|r| matches!(r, Err(PayError::TokenExpired))), "{results:?}");
        let paid = match winners[0] {
            domain::idempotency::Outcome::Fresh { value, .. } => value.clone(),
            other => panic!("unkeyed payment replayed: {other:?}"),
        };
        let held = holds.iter().filter(|r| fx.stored(r.id).status == ReservationStatus::Held).count();
        assert_eq!(held, 3, "the other reservations are untouched");
        let token = fx.token(who.token());
        assert_eq!((token.status, token.expires_at), (TokenStatus::Expired, Some(paid.paid_at)));
    }
    assert_eq!(fx.ports.queue.stats().unwrap().active, 0, "every payer's token left the active set");
}

/// A payment uses up only the token that paid. Here the payer's ACTIVE token lapses and they
/// take a new place in line while a payment's use-up of the old token is still on its way (32
/// threads delivering it late, racing 32 issues for the payer): the WAITING token stays in line, and admission then
/// activates exactly it, advancing the cursor by exactly one.
#[test]
fn a_late_use_up_of_the_paying_token_never_expires_a_waiting_token_of_the_payer() {
    let fx = Fixture::<RedisHarness>::empty(Admission::batch(5, None));
    let who = fx.active_user();
    let paid = who.token().clone();
    fx.advance(Duration::seconds(600)); // the paying token's TTL ran out
    let w = &fx.world;
    let results = race(64, |i| {
        if i % 2 == 0 {
            w.ports.queue.use_up(&paid.value, paid.expires_at.unwrap()).unwrap();
            None
        } else {
            Some(w.app.issue_token(who.user_id()).unwrap())
        }
    });
    let issued: Vec<_> = results.into_iter().flatten().collect();
    assert_eq!(issued.iter().filter(|r| r.created).count(), 1);
    let waiting = issued[0].view.token.clone();
    assert!(issued.iter().all(|r| r.view.token.value == waiting.value));

    assert_eq!(fx.token(&waiting).status, TokenStatus::Waiting);
    assert_eq!(fx.app.read_token(waiting.value.as_str()).unwrap().position, 1);
    // The old token cannot pay and its refusal touches nothing either.
    assert_eq!(fx.app.authorize(paid.value.as_str()), Err(domain::error::AuthorizeError::Expired));
    let stats = fx.ports.queue.stats().unwrap();
    assert_eq!((stats.waiting, stats.active, stats.issued_through), (1, 0, 2));

    fx.advance(Duration::seconds(60));
    assert_eq!(fx.app.admit().unwrap(), AdmissionOutcome::Admitted(1));
    assert_eq!(fx.token(&waiting).status, TokenStatus::Active);
    assert_eq!(fx.ports.queue.cursor().unwrap().admitted_through, waiting.seq);
}

/// Admission racing issues, payments' use-ups and expiry sweeps on one line, with a cap and a
/// TTL short enough that records expire mid-race: admission moves a cursor and records itself
/// while every other script derives from that record, so afterwards every token must read
/// what one admission at a time would have made of it. Read from storage: gapless numbers,
/// FIFO activation in batches of at most N under the cap, each paid token PAID once at its
/// time, the active count equal to the recount, and the sweep writing each token once.
#[test]
fn admission_racing_issues_payments_and_sweeps_keeps_every_invariant() {
    const N: u32 = 5;
    const CAP: usize = 12;
    const ROUNDS: usize = 60;
    let ns = Namespace::new();
    let clock = ManualClock::at_epoch();
    let queue = ns.queue(Arc::new(clock.clone()));
    let ttl = Duration::milliseconds(25);
    let policy = AdmissionPolicy {
        batch: N,
        interval: Duration::milliseconds(1),
        active_ttl: ttl,
        max_active: Some(CAP as u32),
        abandon_after: None,
    };
    let first: Vec<QueueToken> = (0..60)
        .map(|_| queue.issue(UserId::from_uuid(OsRandom.uuid()), OsRandom.token(), clock.now()).unwrap().token)
        .collect();

    // 0: admission, the only thread moving the clock (1 ms before each tick), so a tick's time
    // is the clock's when it runs and the cap can be checked from the stored times below (the
    // race of instances' ticks is the tests' above); 1, 2: issues; 3, 4: payments of every
    // token found ACTIVE, each paid twice; 5: expiry sweeps of 3.
    let results = race(6, |i| {
        let mut issued = Vec::new();
        let mut paid = Vec::new();
        let mut admitted = 0_u64;
        for round in 0..ROUNDS {
            match i {
                0 => {
                    clock.advance(Duration::milliseconds(1));
                    match queue.admit(&policy).unwrap() {
                        AdmissionOutcome::Admitted(n) => admitted += n,
                        AdmissionOutcome::NotDue { .. } => {}
                        other => panic!("unexpected {other:?}"),
                    }
                }
                1 | 2 => issued.push(
                    queue.issue(UserId::from_uuid(OsRandom.uuid()), OsRandom.token(), clock.now()).unwrap().token,
                ),
                3 | 4 => {
                    let t = &first[(round * 2 + i) % first.len()];
                    let found = queue.find(&t.value).unwrap().unwrap();
                    // Read after the find, so the payment is never earlier than the tick
                    // that activated the token (the clock only moves forward).
                    let now = clock.now();
                    if found.status_at(now) == TokenStatus::Active {
                        queue.use_up(&t.value, now).unwrap();
                        queue.use_up(&t.value, now + Duration::microseconds(1)).unwrap();
                        paid.push((t.value.clone(), now));
                    }
                }
                _ => {
                    queue.expire_tokens(3).unwrap();
                }
            }
        }
        (issued, paid, admitted)
    });
    let mut tokens = first.clone();
    tokens.extend(results.iter().flat_map(|r| r.0.clone()));
    let admitted: u64 = results.iter().map(|r| r.2).sum();
    let now = clock.now();
    let read: Vec<QueueToken> = tokens.iter().map(|t| queue.find(&t.value).unwrap().unwrap()).collect();
    let mut by_seq = read.clone();
    by_seq.sort_by_key(|t| t.seq);

    let seqs: Vec<i64> = by_seq.iter().map(|t| t.seq).collect();
    assert_eq!(seqs, (1..=i64::try_from(tokens.len()).unwrap()).collect::<Vec<_>>(), "gapless, one each");
    let cursor = queue.cursor().unwrap();
    assert_eq!(cursor.admitted_through, i64::try_from(admitted).unwrap(), "each admission counted once");
    for t in &by_seq {
        if t.seq <= cursor.admitted_through {
            let at = t.activated_at.expect("admitted tokens were activated");
            assert_ne!(t.status, TokenStatus::Waiting, "{t:?}");
            let expires = t.expires_at.unwrap();
            if t.expired_reason == Some(domain::queue::ExpiredReason::Paid) {
                assert!(expires < at + ttl && expires >= at, "paid while active: {t:?}");
            } else {
                assert_eq!(expires, at + ttl, "{t:?}");
            }
        } else {
            assert_eq!((t.status, t.activated_at, t.expires_at), (TokenStatus::Waiting, None, None), "{t:?}");
        }
    }
    assert!(
        by_seq.windows(2).all(|w| match (w[0].activated_at, w[1].activated_at) {
            (Some(a), Some(b)) => a <= b,
            (None, Some(_)) => false,
            _ => true,
        }),
        "FIFO"
    );
    let mut batches: BTreeMap<OffsetDateTime, usize> = BTreeMap::new();
    for t in &by_seq {
        if let Some(at) = t.activated_at {
            *batches.entry(at).or_default() += 1;
        }
    }
    assert!(batches.values().all(|&k| k <= N as usize), "a batch over N: {batches:?}");
    // Right after each tick, the tokens active then (activated by it or before, not yet
    // expired or paid) were within the cap.
    for at in batches.keys() {
        let active = by_seq
            .iter()
            .filter(|t| t.activated_at.is_some_and(|a| a <= *at) && t.expires_at.is_some_and(|e| e > *at))
            .count();
        assert!(active <= CAP, "{active} active after the tick at {at}");
    }
    // A use-up accepted writes PAID at the first call's time (the second changes nothing); one
    // that lost to the sweep (the store's clock passed the TTL first) finds the token EXPIRED.
    let mut attempts: BTreeMap<TokenValue, Vec<OffsetDateTime>> = BTreeMap::new();
    for (value, at) in results.iter().flat_map(|r| r.1.clone()) {
        attempts.entry(value).or_default().push(at);
    }
    let mut paid = 0;
    for (value, ats) in &attempts {
        let t = queue.find(value).unwrap().unwrap();
        assert_eq!(t.status, TokenStatus::Expired, "{t:?}");
        match t.expired_reason {
            Some(domain::queue::ExpiredReason::Paid) => {
                assert!(t.expires_at.is_some_and(|e| ats.contains(&e)), "paid once, at its time: {t:?} {ats:?}");
                paid += 1;
            }
            _ => assert_eq!(t.expires_at, t.activated_at.map(|a| a + ttl), "{t:?}"),
        }
    }
    assert!(paid > 0 && batches.len() > 3, "the race ran: {paid} paid, {} ticks", batches.len());
    let recount = read.iter().filter(|t| t.status_at(now) == TokenStatus::Active).count();
    assert_eq!(queue.stats().unwrap().active, recount as u64, "the cap's count is the recount");

    // The sweep then writes every lapsed token once, and the list holds the WAITING ones.
    clock.advance(ttl);
    // A call pops at most 4 x its limit, so one that meets only paid tokens changes none:
    // sweep a fixed number of times rather than until a call changes nothing.
    let swept: u64 = (0..100).map(|_| queue.expire_tokens(7).unwrap()).sum();
    let lapsed = read.iter().filter(|t| t.status == TokenStatus::Active).count();
    assert_eq!(swept, lapsed as u64, "each lapsed token written once");
    assert_eq!(queue.stats().unwrap().active, 0);
    let mut con = ns.connection();
    let waiting: i64 = redis::Commands::llen(&mut con, format!("{{{}}}:waiting", ns.prefix)).unwrap();
    assert_eq!(waiting, i64::try_from(tokens.len()).unwrap() - cursor.admitted_through);
}
