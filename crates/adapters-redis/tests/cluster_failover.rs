//! A master of the Redis Cluster dies under load (SIGKILL): its rooms answer `Unavailable`
//! for a few seconds, until its replica takes over, then answer again from the same store;
//! the rooms of the other masters never notice; and no token is duplicated, lost after its
//! issue returned, or admitted twice. And no issue is confirmed while its master's replica is
//! held, also when a socket of a round waiting to be sent is dropped. Each test's cluster (3
//! masters, 3 replicas, node timeout 1 s) is its own, removed when it ends.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, reason = "tests")]

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration as StdDuration, Instant};

use adapters_redis::testing::{Cluster, TestConnection};
use adapters_redis::{AsyncRedisLines, RedisConfig, RedisQueue};
use domain::call::CommitWatch;
use domain::clock::{Clock, ManualClock};
use domain::ids::UserId;
use domain::ports::{AsyncQueueLines as _, QueueStore, StoreError};
use domain::queue::{AdmissionOutcome, AdmissionPolicy, TokenStatus, TokenValue};
use domain::room::RoomId;
use time::{Duration, OffsetDateTime};

/// One call's outcome, as the load saw it.
#[derive(Debug, Clone)]
struct Call {
    at: Instant,
    ok: bool,
    /// The error, when not ok.
    error: Option<String>,
}

/// What one room's client saw.
#[derive(Debug, Default)]
struct Seen {
    calls: Vec<Call>,
    /// Users whose issue returned, with the token they got.
    issued: BTreeMap<UserId, TokenValue>,
    /// Tokens a poll saw ACTIVE, with their activation.
    active: HashMap<TokenValue, OffsetDateTime>,
    /// Admissions that returned, and how many each admitted.
    admitted: u64,
}

fn value(n: u64, room: &RoomId) -> TokenValue {
    let mut bytes = [0_u8; 32];
    bytes[..16].copy_from_slice(uuid::Uuid::new_v4().as_bytes());
    bytes[16..24].copy_from_slice(&n.to_be_bytes());
    TokenValue::from_bytes(bytes).in_room(room)
}

/// A client of one room: issues for new users (a user whose issue failed retries with the same
/// user, as the contract's clients do) and polls a token already issued, until told to stop.
fn load(line: RedisQueue, clock: ManualClock, stop: Arc<AtomicBool>, seen: Arc<Mutex<Seen>>) {
    let room = line.room().clone();
    let mut pending: Option<UserId> = None;
    let mut n = 0_u64;
    while !stop.load(Ordering::Relaxed) {
        n += 1;
        let user = *pending.get_or_insert_with(|| UserId::from_uuid(uuid::Uuid::new_v4()));
        let result = line.issue(user, value(n, &room), clock.now());
        let mut s = seen.lock().unwrap();
        match result {
            Ok(out) => {
                if let Some(before) = s.issued.get(&user) {
                    assert_eq!(before, &out.token.value, "{room}: one token per user");
                }
                s.issued.insert(user, out.token.value.clone());
                s.calls.push(Call { at: Instant::now(), ok: true, error: None });
                pending = None;
            }
            Err(e) => s.calls.push(Call { at: Instant::now(), ok: false, error: Some(format!("{e:?}")) }),
        }
        // Poll a token issued earlier.
        let target = s.issued.values().nth(usize::try_from(n).unwrap() % s.issued.len().max(1)).cloned();
        drop(s);
        if let Some(target) = target {
            let result = line.find(&target);
            let mut s = seen.lock().unwrap();
            match result {
                Ok(Some(token)) => {
                    if token.status == TokenStatus::Active {
                        s.active.insert(target, token.activated_at.unwrap());
                    }
                    s.calls.push(Call { at: Instant::now(), ok: true, error: None });
                }
                Ok(None) => panic!("{room}: a token whose issue returned is gone"),
                Err(e) => s.calls.push(Call { at: Instant::now(), ok: false, error: Some(format!("{e:?}")) }),
            }
        }
        thread::sleep(StdDuration::from_millis(5));
    }
}

#[test]
fn a_master_failing_over_stops_only_its_rooms_for_seconds_and_loses_nothing_acknowledged() {
    let mut cluster = Cluster::start().unwrap();
    let clock = ManualClock::new(OffsetDateTime::now_utc());
    let cfg = RedisConfig::with_url_and_prefix(cluster.url(), "failover");
    let queue = RedisQueue::new(&cfg).unwrap().with_clock(Arc::new(clock.clone()));

    // Two rooms on each master.
    let mut by_master: BTreeMap<u16, Vec<RoomId>> = BTreeMap::new();
    for i in 0.. {
        let room = RoomId::parse(&format!("room-{i}")).unwrap();
        let master = cluster.master_of(&format!("{}:issued", queue.line(&room).namespace())).unwrap();
        let rooms = by_master.entry(master).or_default();
        if rooms.len() < 2 {
            rooms.push(room);
        }
        if by_master.len() == 3 && by_master.values().all(|r| r.len() == 2) {
            break;
        }
        assert!(i < 1000, "rooms did not spread over 3 masters: {by_master:?}");
    }
    let victim = *by_master.keys().next().unwrap();
    let doomed: BTreeSet<RoomId> = by_master[&victim].iter().cloned().collect();
    let rooms: Vec<RoomId> = by_master.values().flatten().cloned().collect();

    let stop = Arc::new(AtomicBool::new(false));
    let seen: BTreeMap<RoomId, Arc<Mutex<Seen>>> = rooms.iter().map(|r| (r.clone(), Arc::default())).collect();
    let clients: Vec<_> = rooms
        .iter()
        .map(|room| {
            let (line, clock, stop, seen) = (queue.line(room), clock.clone(), stop.clone(), seen[room].clone());
            thread::spawn(move || load(line, clock, stop, seen))
        })
        .collect();

    // Admission of every room, a tick every 100 ms of the test, an interval of the clock's.
    let policy = AdmissionPolicy {
        batch: 3,
        interval: Duration::seconds(10),
        active_ttl: Duration::days(1),
        ..AdmissionPolicy::default()
    };
    let started = Instant::now();
    let mut killed_at = None;
    let mut recovered_at: Option<Instant> = None;
    let deadline = started + StdDuration::from_secs(40);
    while Instant::now() < deadline {
        clock.advance(Duration::seconds(10));
        for room in &rooms {
            let result = queue.line(room).admit(&policy);
            let mut s = seen[room].lock().unwrap();
            match result {
                Ok(AdmissionOutcome::Admitted(n)) => {
                    s.admitted += n;
                    s.calls.push(Call { at: Instant::now(), ok: true, error: None });
                }
                Ok(other) => panic!("{room}: unexpected admission outcome {other:?}"),
                Err(e) => s.calls.push(Call { at: Instant::now(), ok: false, error: Some(format!("{e:?}")) }),
            }
        }
        thread::sleep(StdDuration::from_millis(100));
        if killed_at.is_none() && started.elapsed() > StdDuration::from_millis(1500) {
            killed_at = Some(Instant::now());
            cluster.kill(victim);
        }
        // Recovered: every doomed room's last 20 calls succeeded; then 1 s more of load.
        if let (Some(_), None) = (killed_at, recovered_at) {
            let all_ok = doomed.iter().all(|room| {
                let s = seen[room].lock().unwrap();
                s.calls.len() > 20
                    && s.calls[s.calls.len() - 20..].iter().all(|c| c.ok)
                    && s.calls.iter().any(|c| !c.ok)
            });
            if all_ok {
                recovered_at = Some(Instant::now());
            }
        }
        if recovered_at.is_some_and(|t| t.elapsed() > StdDuration::from_secs(1)) {
            break;
        }
    }
    stop.store(true, Ordering::Relaxed);
    for client in clients {
        client.join().unwrap();
    }
    let killed_at = killed_at.unwrap();
    assert!(recovered_at.is_some(), "the doomed rooms did not recover within 40 s");
    assert_ne!(cluster.master_of(&format!("{}:issued", queue.line(&rooms[0]).namespace())).unwrap(), victim);

    for room in &rooms {
        let s = seen[room].lock().unwrap();
        let failed: Vec<&Call> = s.calls.iter().filter(|c| !c.ok).collect();
        let ok_after_kill = s.calls.iter().filter(|c| c.ok && c.at > killed_at).count();
        if doomed.contains(room) {
            assert!(!failed.is_empty(), "{room}: its master died, yet no call failed");
            for call in &failed {
                let error = call.error.as_deref().unwrap_or_default();
                assert!(error.starts_with("Unavailable"), "{room}: failed other than Unavailable: {error}");
                assert!(call.at >= killed_at, "{room}: failed {:?} before the kill: {error}", killed_at - call.at);
            }
            let window = failed.last().unwrap().at - killed_at;
            assert!(window < StdDuration::from_secs(8), "{room}: failed for {window:?} after the kill");
            let after: Vec<&Call> = s.calls.iter().filter(|c| c.at > failed.last().unwrap().at).collect();
            assert!(after.len() >= 20 && after.iter().all(|c| c.ok), "{room}: recovered for good");
            eprintln!("{room}: {} calls failed, for {window:?} after the kill", failed.len());
        } else {
            let when: Vec<String> =
                failed.iter().map(|c| format!("{:?} {:?}", c.at.checked_duration_since(killed_at), c.error)).collect();
            assert!(failed.is_empty(), "{room}: on a healthy master, yet calls failed (after the kill by): {when:?}");
            assert!(ok_after_kill > 20, "{room}: kept answering");
        }
    }

    // Nothing acknowledged was lost, duplicated or admitted twice.
    for room in &rooms {
        let line = queue.line(room);
        let s = seen[room].lock().unwrap();
        let stats = line.stats().unwrap();
        let mut seqs = BTreeSet::new();
        for (user, value) in &s.issued {
            let token =
                line.find(value).unwrap().unwrap_or_else(|| panic!("{room}: a token whose issue returned is lost"));
            assert_eq!(token.user_id, *user);
            assert!(seqs.insert(token.seq), "{room}: position {} held twice", token.seq);
            assert!(token.seq <= stats.issued_through);
            // The same user again: their one token, not a second.
            let again = line.issue(*user, value_for_retry(room), clock.now()).unwrap();
            assert!(!again.created && again.token.value == *value, "{room}: a second token for one user");
            let admitted = token.seq <= stats.cursor.admitted_through;
            assert_eq!(token.status == TokenStatus::Active, admitted, "{room}: status by position {}", token.seq);
        }
        for (value, activated) in &s.active {
            let token = line.find(value).unwrap().unwrap();
            assert_eq!(token.status, TokenStatus::Active, "{room}: seen ACTIVE, now {:?}", token.status);
            assert_eq!(token.activated_at, Some(*activated), "{room}: admitted twice");
        }
        assert!(
            s.admitted <= u64::try_from(stats.cursor.admitted_through).unwrap(),
            "{room}: admissions that returned ({}) lost ({} admitted now)",
            s.admitted,
            stats.cursor.admitted_through
        );
    }
}

fn value_for_retry(room: &RoomId) -> TokenValue {
    value(u64::MAX, room)
}

/// No issue is confirmed while its master's only replica is held (SIGSTOP), also when the
/// socket a waiting round's script went on is dropped by the master meanwhile and the
/// cluster client reopens it: a `WAIT` sent as the first command of a fresh socket would
/// answer at once (Redis counts from the last command a socket ran), so this holds only while
/// the round goes on a socket that has run a command (see docs/architecture.md). A first
/// issue's round is out; a second issue's script answers on the pair's other socket, its round
/// waiting behind the first; the master drops that socket, and a poll meets the drop. Both
/// issues answer `Unavailable` once their rounds time out, and once the replica runs again the
/// second user's retry gets the token its lost call stored.
#[test]
fn no_issue_is_confirmed_while_its_replica_is_held_even_if_a_socket_drops() {
    let cluster = Cluster::start().unwrap();
    let room = RoomId::parse("held-replica").unwrap();
    let mut cfg = RedisConfig::with_url_and_prefix(cluster.url(), "held-replica");
    cfg.timeouts.replica_ack = StdDuration::from_secs(1);
    cfg.timeouts.read = StdDuration::from_secs(10);
    let lines = Arc::new(AsyncRedisLines::new(&cfg).unwrap());
    let line = RedisQueue::new(&cfg).unwrap().line(&room);
    let master = cluster.master_of(&format!("{}:issued", line.namespace())).unwrap();
    let replica = cluster.replica_of(master).unwrap();
    let mut admin = TestConnection::open(&format!("redis://127.0.0.1:{master}")).unwrap();
    // The master's clients as `CLIENT LIST` shows them: (id, last command, flags).
    let mut clients = move || -> Vec<(String, String, String)> {
        let list: String = redis::cmd("CLIENT").arg("LIST").arg("TYPE").arg("normal").query(&mut admin).unwrap();
        let field =
            |line: &str, name: &str| line.split(' ').find_map(|f| f.strip_prefix(name)).unwrap_or_default().to_owned();
        list.lines().map(|l| (field(l, "id="), field(l, "cmd="), field(l, "flags="))).collect()
    };
    let now = OffsetDateTime::now_utc();
    let issue = |lines: &Arc<AsyncRedisLines>, user: UserId| {
        let (lines, room) = (lines.clone(), room.clone());
        tokio::spawn(async move { lines.issue(&room, user, value(1, &room), now, &CommitWatch::new()).await })
    };
    let second_user = UserId::from_uuid(uuid::Uuid::new_v4());
    // One thread: every call goes through this thread's pair of connections.
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    let (first, second) = rt.block_on(async {
        // Connected, the scripts loaded and the replica confirming before it is held.
        let warm = issue(&lines, UserId::from_uuid(uuid::Uuid::new_v4())).await.unwrap().unwrap();
        cluster.signal(replica, "-STOP");
        let deadline = Instant::now() + StdDuration::from_secs(20);
        let first = issue(&lines, UserId::from_uuid(uuid::Uuid::new_v4()));
        while !clients().iter().any(|(_, cmd, flags)| cmd == "wait" && flags.contains('b')) {
            assert!(Instant::now() < deadline, "the first round's WAIT was not sent");
            tokio::time::sleep(StdDuration::from_millis(5)).await;
        }
        let second = issue(&lines, second_user);
        while line.stats().unwrap().issued_through < 3 {
            assert!(Instant::now() < deadline, "the second issue's script did not run");
            tokio::time::sleep(StdDuration::from_millis(5)).await;
        }
        // Its reply read, and its round waiting behind the first.
        tokio::time::sleep(StdDuration::from_millis(100)).await;
        assert!(!first.is_finished() && !second.is_finished(), "both wait for a replica");
        // Every client whose last call was a script: the pair's other socket (and the
        // blocking pool's, which read the stats).
        let mut node = TestConnection::open(&format!("redis://127.0.0.1:{master}")).unwrap();
        let scripts: Vec<_> = clients().into_iter().filter(|(_, cmd, _)| cmd == "evalsha").collect();
        assert_eq!(scripts.len(), 2, "the second issue's socket and the pool's: {scripts:?}");
        for (id, _, _) in scripts {
            let _: i64 = redis::cmd("CLIENT").arg("KILL").arg("ID").arg(&id).query(&mut node).unwrap();
        }
        // A poll meets the dropped socket; the cluster client opens it anew.
        let found = lines.find_with_cursor(&room, &warm.token.value).await.unwrap();
        assert!(found.is_some(), "the poll is answered");
        (first.await.unwrap(), second.await.unwrap())
    });
    cluster.signal(replica, "-CONT");
    assert!(matches!(first, Err(StoreError::Unavailable(_))), "{first:?}");
    assert!(matches!(second, Err(StoreError::Unavailable(_))), "confirmed on the reopened socket: {second:?}");
    // Once the replica runs again, the user's retry gets the token the second issue stored.
    let deadline = Instant::now() + StdDuration::from_secs(20);
    let retry = loop {
        match rt.block_on(async { issue(&lines, second_user).await }).unwrap() {
            Ok(out) => break out,
            Err(StoreError::Unavailable(_)) if Instant::now() < deadline => thread::sleep(StdDuration::from_millis(50)),
            Err(e) => panic!("the retry failed: {e}"),
        }
    };
    assert_eq!((retry.created, retry.token.seq), (false, 3), "{retry:?}");
}
