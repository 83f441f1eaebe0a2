//! A master of the Redis Cluster dies under load (SIGKILL): its rooms answer `Unavailable`
//! for a few seconds, until its replica takes over, then answer again from the same store;
//! the rooms of the other masters never notice; and no token is duplicated, lost after its
//! issue returned, or admitted twice. And no issue is confirmed while its master's replica is
//! held, also when the master drops its sockets while a call waits for the replica; an issue
//! gathered while its line's slot moved to another master is sent there and confirmed there,
//! with the keys or without. And an issue sent on a slot map that
//! went stale is sent again on a fresh one and answers 201. Each test's cluster (3 masters, 3
//! replicas, node timeout 1 s) is its own, removed when it ends.
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
use domain::ports::{AsyncQueueLines as _, IssueOutcome, QueueStore, StoreError};
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

/// A connection to the node on `port` alone.
fn node(port: u16) -> TestConnection {
    TestConnection::open(&format!("redis://127.0.0.1:{port}")).unwrap()
}

/// The slot of a line's key, to be moved by hand from its master to another master, as a
/// failover or a resharding moves it.
struct SlotMove {
    key: String,
    slot: i64,
    from: u16,
    to: u16,
    from_id: String,
    to_id: String,
}

impl SlotMove {
    /// The slot of `key` from its master `from` to another master of `cluster`.
    fn plan(cluster: &Cluster, key: &str, from: u16) -> Self {
        let is_master = |port: u16| {
            let role: Vec<redis::Value> = redis::cmd("ROLE").query(&mut node(port)).unwrap();
            redis::from_redis_value::<String>(role[0].clone()).unwrap() == "master"
        };
        let to = cluster.live_ports().into_iter().find(|&p| p != from && is_master(p)).unwrap();
        let slot = redis::cmd("CLUSTER").arg("KEYSLOT").arg(key).query(&mut node(to)).unwrap();
        let id = |port: u16| -> String { redis::cmd("CLUSTER").arg("MYID").query(&mut node(port)).unwrap() };
        Self { key: key.to_owned(), slot, from, to, from_id: id(from), to_id: id(to) }
    }

    fn setslot(&self, port: u16, state: &str, node_id: &str) {
        let () =
            redis::cmd("CLUSTER").arg("SETSLOT").arg(self.slot).arg(state).arg(node_id).query(&mut node(port)).unwrap();
    }

    /// Hands the slot over without its keys (`CLUSTER DELSLOTS` on the old master, `SETSLOT …
    /// NODE` on the new): what a failover onto a replica that missed the writes looks like.
    fn without_keys(&self) {
        let () = redis::cmd("CLUSTER").arg("DELSLOTS").arg(self.slot).query(&mut node(self.from)).unwrap();
        self.setslot(self.to, "NODE", &self.to_id);
    }

    /// Hands the slot over with every key of it, as `redis-cli --cluster reshard` moves them.
    fn with_keys(&self) {
        self.setslot(self.to, "IMPORTING", &self.from_id);
        self.setslot(self.from, "MIGRATING", &self.to_id);
        let keys: Vec<String> =
            redis::cmd("CLUSTER").arg("GETKEYSINSLOT").arg(self.slot).arg(1000).query(&mut node(self.from)).unwrap();
        assert!(!keys.is_empty());
        let () = redis::cmd("MIGRATE")
            .arg("127.0.0.1")
            .arg(self.to)
            .arg("")
            .arg(0)
            .arg(5000)
            .arg("KEYS")
            .arg(&keys)
            .query(&mut node(self.from))
            .unwrap();
        self.setslot(self.to, "NODE", &self.to_id);
        self.setslot(self.from, "NODE", &self.to_id);
    }

    /// Announces the move (`BUMPEPOCH` on the new master) and waits until every live node of
    /// `cluster` but `deaf` (a held node, which answers nobody) maps the key to the new master.
    async fn announce(&self, cluster: &Cluster, deaf: Option<u16>) {
        let _: String = redis::cmd("CLUSTER").arg("BUMPEPOCH").query(&mut node(self.to)).unwrap();
        let deadline = Instant::now() + StdDuration::from_secs(20);
        let nodes: Vec<u16> = cluster.live_ports().into_iter().filter(|&p| Some(p) != deaf).collect();
        while nodes.iter().any(|&p| Cluster::master_of_port(p, &self.key) != Some(self.to)) {
            assert!(Instant::now() < deadline, "the slot did not move to {}", self.to_id);
            tokio::time::sleep(StdDuration::from_millis(20)).await;
        }
    }
}

/// A line on a cluster of its own whose replica a test holds (SIGSTOP), called from one
/// thread's runtime, so through one pair of connections; a replica has 1 s to confirm.
struct HeldLine {
    cluster: Cluster,
    room: RoomId,
    lines: Arc<AsyncRedisLines>,
    line: RedisQueue,
    master: u16,
    replica: u16,
    rt: tokio::runtime::Runtime,
}

impl HeldLine {
    fn start(room: &str) -> Self {
        let cluster = Cluster::start().unwrap();
        let room = RoomId::parse(room).unwrap();
        let mut cfg = RedisConfig::with_url_and_prefix(cluster.url(), room.as_str());
        cfg.timeouts.replica_ack = StdDuration::from_secs(1);
        cfg.timeouts.read = StdDuration::from_secs(10);
        let lines = Arc::new(AsyncRedisLines::new(&cfg).unwrap());
        let line = RedisQueue::new(&cfg).unwrap().line(&room);
        let master = cluster.master_of(&format!("{}:cursor", line.namespace())).unwrap();
        let replica = cluster.replica_of(master).unwrap();
        let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        Self { cluster, room, lines, line, master, replica, rt }
    }

    /// An issue for `user`, spawned on the runtime (call from within it).
    fn issue(&self, user: UserId) -> tokio::task::JoinHandle<Result<IssueOutcome, StoreError>> {
        let (lines, room) = (self.lines.clone(), self.room.clone());
        let now = OffsetDateTime::now_utc();
        tokio::spawn(async move { lines.issue(&room, user, value(1, &room), now, &CommitWatch::new()).await })
    }

    /// Holds the replica and leaves two issues waiting: the first's call out (its `WAIT`
    /// blocked on the master), the second gathered behind it, not sent. Returns a token issued
    /// before, and the two issues.
    async fn one_confirming_one_gathered(&self, second_user: UserId) -> (TokenValue, Issue, Issue) {
        // Connected, the scripts loaded and the replica confirming before it is held.
        let warm = self.issue(UserId::from_uuid(uuid::Uuid::new_v4())).await.unwrap().unwrap();
        self.cluster.signal(self.replica, "-STOP");
        let deadline = Instant::now() + StdDuration::from_secs(20);
        let first = self.issue(UserId::from_uuid(uuid::Uuid::new_v4()));
        loop {
            let info: String = redis::cmd("INFO").arg("clients").query(&mut node(self.master)).unwrap();
            if info.lines().any(|l| l.trim() == "blocked_clients:1") {
                break;
            }
            assert!(Instant::now() < deadline, "the first call's WAIT was not sent");
            tokio::time::sleep(StdDuration::from_millis(5)).await;
        }
        let second = self.issue(second_user);
        tokio::time::sleep(StdDuration::from_millis(100)).await;
        assert_eq!(self.line.stats().unwrap().issued_through, 2, "the second issue waits gathered, not sent");
        assert!(!first.is_finished() && !second.is_finished(), "both wait");
        (warm.token.value, first, second)
    }
}

type Issue = tokio::task::JoinHandle<Result<IssueOutcome, StoreError>>;

/// No issue is confirmed while its master's only replica is held, also when the master drops
/// every socket of the service meanwhile and the cluster client reopens them: a `WAIT` sent as
/// the first command of a fresh socket would answer at once (Redis counts from the last command
/// a socket ran), which sending each call's script and `WAIT` in one pipeline rules out. With
/// one call out and an issue gathered behind it, the master drops the sockets (the one with the
/// `WAIT` blocked among them) and a poll meets the drop. The first call is sent again and both
/// issues answer `Unavailable` once their `WAIT`s time out, and once the replica runs again the
/// second user's retry gets the token its call stored.
#[test]
fn no_issue_is_confirmed_while_its_replica_is_held_even_if_a_socket_drops() {
    let held = HeldLine::start("held-replica");
    let second_user = UserId::from_uuid(uuid::Uuid::new_v4());
    let (first, second) = held.rt.block_on(async {
        let (warm, first, second) = held.one_confirming_one_gathered(second_user).await;
        let killed: i64 = redis::cmd("CLIENT")
            .arg("KILL")
            .arg("TYPE")
            .arg("normal")
            .arg("SKIPME")
            .arg("yes")
            .query(&mut node(held.master))
            .unwrap();
        assert!(killed >= 2, "the pair's sockets and the pool's: {killed}");
        // A poll meets the dropped socket; the cluster client opens it anew.
        let found = held.lines.find_with_cursor(&held.room, &warm).await.unwrap();
        assert!(found.is_some(), "the poll is answered");
        (first.await.unwrap(), second.await.unwrap())
    });
    held.cluster.signal(held.replica, "-CONT");
    assert!(matches!(first, Err(StoreError::Unavailable(_))), "{first:?}");
    assert!(matches!(second, Err(StoreError::Unavailable(_))), "confirmed on the reopened socket: {second:?}");
    // Once the replica runs again, the user's retry gets the token the second issue stored.
    let deadline = Instant::now() + StdDuration::from_secs(20);
    let retry = loop {
        match held.rt.block_on(async { held.issue(second_user).await }).unwrap() {
            Ok(out) => break out,
            Err(StoreError::Unavailable(_)) if Instant::now() < deadline => thread::sleep(StdDuration::from_millis(50)),
            Err(e) => panic!("the retry failed: {e}"),
        }
    };
    assert_eq!((retry.created, retry.token.seq), (false, 3), "{retry:?}");
}

/// An issue gathered while its line's slot moves to another master is confirmed only by what
/// the master it reaches holds: with one call out and an issue gathered behind it, the slot is
/// handed to another master without its keys (`CLUSTER DELSLOTS` on the old, `SETSLOT … NODE`
/// on the new: what a failover onto a replica that missed the writes looks like), and a poll
/// meets the `MOVED`. The first call times out (503). The gathered issue's call meets `MOVED`,
/// is sent again to the new master, and its script runs there: the 201 it answers is for a
/// token that master stores and its replica confirmed. (With `WAIT` sent apart from the
/// script, as rounds once were, a `WAIT` routed to the new master confirmed a token only the
/// old one had.)
#[test]
fn an_issue_gathered_while_its_slot_moved_without_its_keys_is_stored_and_confirmed_there() {
    let held = HeldLine::start("moved-round");
    let moving = SlotMove::plan(&held.cluster, &format!("{}:cursor", held.line.namespace()), held.master);
    let (first, second) = held.rt.block_on(async {
        let second_user = UserId::from_uuid(uuid::Uuid::new_v4());
        let (warm, first, second) = held.one_confirming_one_gathered(second_user).await;
        // The slot to the other master, without its keys, until every node agrees (but the
        // held replica, which answers nobody).
        moving.without_keys();
        moving.announce(&held.cluster, Some(held.replica)).await;
        // A poll meets the move: the line is on the other master now, without the token.
        let _ = held.lines.find_with_cursor(&held.room, &warm).await;
        (first.await.unwrap(), second.await.unwrap())
    });
    held.cluster.signal(held.replica, "-CONT");
    assert!(matches!(first, Err(StoreError::Unavailable(_))), "{first:?}");
    let second = second.unwrap();
    assert!(second.created, "{second:?}");
    assert_eq!(held.cluster.master_of(&format!("{}:cursor", held.line.namespace())).unwrap(), moving.to);
    let found = held.rt.block_on(held.lines.find_with_cursor(&held.room, &second.token.value)).unwrap();
    assert_eq!(found.map(|(t, _)| t.value), Some(second.token.value), "the new master holds the token");
}

/// A worker's connection whose slot map went stale while it served other lines (what a
/// failover leaves it): its first issue into the line that moved meets `MOVED` and is sent
/// again on a fresh connection, so it answers 201 with the token it stored instead of 503.
/// The line's slot is moved, empty, to another master after the connection read its map.
#[test]
fn an_issue_that_meets_a_moved_slot_is_sent_again_and_answers_created() {
    let cluster = Cluster::start().unwrap();
    let cfg = RedisConfig::with_url_and_prefix(cluster.url(), "stale-map");
    let lines = AsyncRedisLines::new(&cfg).unwrap();
    let queue = RedisQueue::new(&cfg).unwrap();
    let (warm, moving) = (RoomId::parse("warm").unwrap(), RoomId::parse("moving").unwrap());
    let cursor_key = format!("{}:cursor", queue.line(&moving).namespace());
    let slot = SlotMove::plan(&cluster, &cursor_key, cluster.master_of(&cursor_key).unwrap());
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    let issue = |room: &RoomId, user: UserId| {
        rt.block_on(lines.issue(room, user, value(1, room), OffsetDateTime::now_utc(), &CommitWatch::new()))
    };
    // This thread's connections open, and read the slot map, with a call into another line.
    assert!(issue(&warm, UserId::from_uuid(uuid::Uuid::new_v4())).unwrap().created);

    slot.without_keys();
    rt.block_on(slot.announce(&cluster, None));
    let moved_count = || -> u64 {
        let info: String = redis::cmd("INFO").arg("errorstats").query(&mut node(slot.from)).unwrap();
        info.lines().find_map(|l| l.strip_prefix("errorstat_MOVED:count=")).map_or(0, |n| n.trim().parse().unwrap())
    };
    let moved_before = moved_count();

    let who = UserId::from_uuid(uuid::Uuid::new_v4());
    let issued = issue(&moving, who).unwrap();
    assert_eq!((issued.created, issued.token.seq), (true, 1), "{issued:?}");
    assert!(moved_count() > moved_before, "the first attempt went to the old master and met MOVED");
    let again = issue(&moving, who).unwrap();
    assert_eq!((again.created, again.token.value), (false, issued.token.value), "one token for the user");
    assert_eq!(cluster.master_of(&cursor_key).unwrap(), slot.to);
}

/// An issue gathered while its line's slot moves to another master *with* its keys
/// (`MIGRATE`, as a resharding does) is stored and confirmed there: its call meets `MOVED` on
/// its connection's stale slot map, is sent again on a connection opened for it, takes the
/// line's next number on the new master, and that master's replica confirms it. The first
/// call, out on the held replica, times out (503).
#[test]
fn an_issue_gathered_while_its_slot_moved_with_its_keys_is_stored_and_confirmed_there() {
    let held = HeldLine::start("migrated-round");
    let moving = SlotMove::plan(&held.cluster, &format!("{}:cursor", held.line.namespace()), held.master);
    let second_user = UserId::from_uuid(uuid::Uuid::new_v4());
    let (first, second) = held.rt.block_on(async {
        let (_, first, second) = held.one_confirming_one_gathered(second_user).await;
        moving.with_keys();
        moving.announce(&held.cluster, Some(held.replica)).await;
        (first.await.unwrap(), second.await.unwrap())
    });
    held.cluster.signal(held.replica, "-CONT");
    assert!(matches!(first, Err(StoreError::Unavailable(_))), "{first:?}");
    let second = second.unwrap();
    assert_eq!((second.created, second.token.seq), (true, 3), "{second:?}");
    let retry = held.rt.block_on(async { held.issue(second_user).await }).unwrap().unwrap();
    assert_eq!((retry.created, retry.token.value), (false, second.token.value), "one token for the user");
}
