//! The Redis test files again, on a real Redis Cluster of 3 masters and 3 replicas that this
//! binary starts itself (`adapters_redis::testing::shared`, one for the whole binary, removed
//! when it exits): the queue and rooms conformance suites (directly, through the caches, and
//! with the front door's calls through the async cluster client), the races and the rooms' own
//! tests, each case in a namespace of its own whose rooms'
//! lines land on the cluster's masters by their hash tags. `common::default_url` gives the
//! cluster's URL because this binary's name starts with `cluster`. Then what only a cluster
//! has: rooms spread over the masters, a script that meets a master that never saw it, and
//! the async client's issues confirmed by replicas, a `WAIT` after each call.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, reason = "tests")]
// Each included test file brings its own `mod common` (as it does in its own binary); the
// cluster they use is one, in the library (`testing::shared`).
#![allow(clippy::duplicate_mod, reason = "the test files are included as they are")]

mod common;

#[path = "aio.rs"]
mod aio;
#[path = "conformance.rs"]
mod conformance;
#[path = "races.rs"]
mod races;
#[path = "rooms.rs"]
mod rooms;

mod spread {
    use std::collections::BTreeSet;
    use std::sync::Arc;

    use adapters_redis::testing::{shared, TestConnection};
    use domain::clock::{Clock, ManualClock, StoreTime};
    use domain::ids::UserId;
    use domain::ports::QueueStore;
    use domain::queue::TokenValue;
    use domain::room::RoomId;

    use super::common::Namespace;

    #[test]
    fn rooms_land_on_every_master_and_each_answers_for_its_own_line() {
        let cluster = shared();
        let ns = Namespace::new();
        assert_eq!(ns.url, cluster.url(), "this binary runs on its cluster");
        let clock = ManualClock::new(time::OffsetDateTime::now_utc());
        let main = ns.queue(Arc::new(clock.clone()));
        let rooms: Vec<RoomId> = (0..12).map(|i| RoomId::parse(&format!("room-{i}")).unwrap()).collect();
        let mut masters = BTreeSet::new();
        for room in &rooms {
            let line = main.line(room);
            masters.insert(cluster.master_of(&format!("{}:issued", line.namespace())).unwrap());
            for n in 1..=3_i64 {
                let value = TokenValue::from_bytes(rand_bytes(room, n)).in_room(room);
                let out = line.issue(UserId::from_uuid(uuid::Uuid::new_v4()), value, clock.now()).unwrap();
                assert!(out.created);
                assert_eq!(out.token.seq, n, "{room}: its own gapless line");
            }
        }
        assert_eq!(masters.len(), 3, "12 rooms spread over all 3 masters: {masters:?}");
        // Readiness: the cluster's state, from a node that answers.
        main.ping().unwrap();
        // The instance's clock: `TIME` of `main`'s master.
        let server_now = ns.queue_on_server_time().read_time().unwrap();
        assert!((server_now - time::OffsetDateTime::now_utc()).abs() < time::Duration::seconds(5));
    }

    #[test]
    fn a_master_that_lost_its_scripts_loads_them_again() {
        let cluster = shared();
        let ns = Namespace::new();
        let clock = ManualClock::new(time::OffsetDateTime::now_utc());
        let line = ns.queue(Arc::new(clock.clone())).line(&RoomId::parse("flushed").unwrap());
        let room = line.room().clone();
        let issue = |n: u8| {
            let value = TokenValue::from_bytes([n; 32]).in_room(&room);
            line.issue(UserId::from_uuid(uuid::Uuid::new_v4()), value, clock.now()).unwrap()
        };
        assert_eq!(issue(1).token.seq, 1);
        let master = cluster.master_of(&format!("{}:issued", line.namespace())).unwrap();
        let mut node = TestConnection::open(&format!("redis://127.0.0.1:{master}")).unwrap();
        let _: () = redis::cmd("SCRIPT").arg("FLUSH").query(&mut node).unwrap();
        assert_eq!(issue(2).token.seq, 2, "NOSCRIPT answered by loading the script on that master");
    }

    fn rand_bytes(room: &RoomId, n: i64) -> [u8; 32] {
        let mut b = [0_u8; 32];
        let id = uuid::Uuid::new_v4();
        b[..16].copy_from_slice(id.as_bytes());
        b[16] = u8::try_from(n).unwrap();
        b[17] = u8::try_from(room.as_str().len()).unwrap();
        b
    }
}

mod confirmations {
    use std::sync::Arc;

    use adapters_redis::testing::{shared, TestConnection};
    use adapters_redis::AsyncRedisLines;
    use domain::call::CommitWatch;
    use domain::ids::UserId;
    use domain::ports::{AsyncQueueLines as _, QueueStore as _};
    use domain::queue::TokenValue;
    use domain::room::RoomId;

    use super::common::Namespace;

    /// `WAIT` calls a node has answered, from its command statistics.
    fn waits(node: &mut TestConnection) -> u64 {
        let info: String = redis::cmd("INFO").arg("commandstats").query(node).unwrap();
        info.lines()
            .find_map(|l| l.strip_prefix("cmdstat_wait:calls="))
            .and_then(|rest| rest.split(',').next())
            .and_then(|n| n.parse().ok())
            .unwrap_or(0)
    }

    /// 200 issues at once from one thread's connections: their calls, each with its `WAIT`, go
    /// to the master of the line's slot, and every token is stored once, gapless. How many
    /// calls they share depends on how they arrive (and other cases write to these masters at
    /// the same time); that they share calls is shown where a replica can be held, in aio.rs.
    #[test]
    fn concurrent_issues_are_confirmed_on_the_master_of_their_line() {
        const N: usize = 200;
        let cluster = shared();
        let ns = Namespace::new();
        let room = RoomId::parse("rounds").unwrap();
        let lines = AsyncRedisLines::new(&ns.config()).unwrap();
        let line = ns.queue_on_server_time().line(&room);
        let master = cluster.master_of(&format!("{}:issued", line.namespace())).unwrap();
        let mut node = TestConnection::open(&format!("redis://127.0.0.1:{master}")).unwrap();
        let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        let lines = Arc::new(lines);
        // One token first: the connection is open and the script loaded before counting.
        let now = time::OffsetDateTime::now_utc();
        let first = rt.block_on(lines.issue(&room, user(), value(&room), now, &CommitWatch::new())).unwrap();
        assert_eq!(first.token.seq, 1);
        let before = waits(&mut node);
        let outcomes = rt.block_on(async {
            let mut calls = tokio::task::JoinSet::new();
            for _ in 0..N {
                let (lines, room) = (lines.clone(), room.clone());
                calls.spawn(async move { lines.issue(&room, user(), value(&room), now, &CommitWatch::new()).await });
            }
            calls.join_all().await
        });
        let sent = waits(&mut node) - before;
        let mut seqs: Vec<i64> = outcomes.into_iter().map(|o| o.unwrap().token.seq).collect();
        seqs.sort_unstable();
        assert_eq!(seqs, (2..=i64::try_from(N).unwrap() + 1).collect::<Vec<_>>());
        assert!(sent >= 1, "no WAIT reached the line's master");
        assert_eq!(line.stats().unwrap().issued_through, i64::try_from(N).unwrap() + 1);
    }

    fn user() -> UserId {
        UserId::from_uuid(uuid::Uuid::new_v4())
    }

    fn value(room: &RoomId) -> TokenValue {
        let mut bytes = [0_u8; 32];
        bytes[..16].copy_from_slice(uuid::Uuid::new_v4().as_bytes());
        TokenValue::from_bytes(bytes).in_room(room)
    }
}
