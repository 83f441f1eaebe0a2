//! The waiting queue on Redis: [`RedisQueue`] implements the domain's
//! [`QueueStore`] port for `QUEUE_STORE=redis`. Tokens, their
//! gapless order, positions, the admission cursor and the admission clock live in Redis;
//! the catalogue, reservations, balances and payments stay in the other store. Every queue
//! operation is one atomic step in one round trip, a Lua script (`EVALSHA`; after a server
//! restart the `redis` crate meets `NOSCRIPT` once, loads the script and sends it again) or a
//! single command, so every rule of the port holds with any number of threads and instances
//! sharing one Redis.
//!
//! # Layout
//!
//! Modules: [`config`] (URL or cluster nodes, prefix, pool, timeouts, replica
//! confirmation), `pool` (r2d2 connections to one Redis or to a cluster, with timeouts and an
//! epoch that retires every pooled connection once Redis or a node is found gone), `keys`,
//! `codec` (µs times, token hashes, error mapping), `scripts` with the Lua in `src/lua/`,
//! `draw` (the draw of a pre-queue in steps), `aio` (the front door's issue and poll from
//! the HTTP worker, on tokio multiplexed connections: `domain::ports::AsyncQueueLines`),
//! `testing` (feature `testing`: a Redis Cluster
//! a test starts itself, and connections to inspect keys). Tests in `tests/`: `conformance`
//! (the queue and rooms suites, directly and through the caches), `races`, `store` (what only
//! this adapter has, among it that a tick writes no token and what reads derive), `rooms`
//! (the same for rooms' lines and draws), `outage` (a private `redis-server`), `cluster`
//! (`conformance`, `races` and `rooms` again on a cluster of 3 masters and 3 replicas that
//! the binary starts, and rooms spread over its masters), `cluster_failover` (a master killed
//! under load), `aio` (the queue and rooms suites with every issue and poll through the async
//! client, its races and outages), `scale` (`#[ignore]`d measurements at a million tokens).
//!
//! **One line per room.** [`RedisQueue`] is the line of one room: `main`'s from
//! [`RedisQueue::new`], a room's from [`RedisQueue::line`] (sharing the pool, clock and
//! configuration); [`RedisLines`] is the domain's [`QueueLines`]. `main`'s keys are in the
//! namespace `{prefix}` (default `{concert}`), as they always were; room `r`'s are in
//! `{prefix:r}`. The braces are a cluster hash tag, so every key of one line shares one slot,
//! which scripts that touch several need, and each script touches one line only: lines spread
//! over a cluster's slots. A token's value names its room (`<room>.<hex>`, bare hex for
//! `main`), so a value of another room is no token of this line: `find` answers `None`,
//! `use_up` and `note_seen` ignore it, `issue` refuses it.
//!
//! **No key per token.** A token's 32 bytes are 24 random ones (the planned value's first 24:
//! 192 bits, unguessable) and its arrival `seq`, big-endian, which `issue.lua` puts there once
//! it took the `seq`. So the value names its record, and a waiting buyer costs a packed record
//! in a bucket of 128, an entry of the users hash and a `seq` in the WAITING list: about 130
//! bytes of Redis memory, where a hash per token and a string per user took about 550 (the
//! bench's "Redis memory per waiting buyer"). A value whose last 8 bytes are no `seq` of the
//! line (a forged or foreign one) is not looked up; one whose random part is not its record's
//! is no token. The draw's order, "by value, byte-wise", is the random part's order.
//!
//! | key | type | holds |
//! | --- | --- | --- |
//! | `{p}:issued` | string (counter) | the `seq` of the last token issued (`issued_through`) |
//! | `{p}:cursor` | hash | `admitted` (`admitted_through`), `last` (`last_admission_at`, µs; absent before the first admission), `swept` (positions that left the head of `{p}:waiting`; absent: `admitted`, as a version that popped at admission left it), `live` and `closed` (the open admission records' count of tokens, and the `through` of the last record closed), `epoch` (Redis' clock in µs when the line was created by the first issue into the empty namespace) and `layout`, `abandoned` (tokens skipped at their turn, ever), `imax`/`iback` (the latest issue time, and the most an issue time fell behind it in line order: see `draw`), the draw's record `draw_at`/`draw_entrants`/`draw_seed` once it is recorded, and while a draw runs its claim (`draw_owner`, `draw_lease`, `draw_claim_at`, `draw_opens`, `draw_claim_seed`, `draw_len`, `draw_base`) |
//! | `{p}:waiting` | list | the arrival `seq` of every token not yet swept, in position order (`seq` as shown): pushed at issue, position `p` at index `p - swept - 1`; those at or below `admitted` were admitted by a record, the rest are WAITING; the expiry sweep pops the head; a draw puts them in the drawn order |
//! | `{p}:admissions` | sorted set | one member per admission that admitted any, `through:after:at:expires`, scored by `through`: the tokens stored WAITING at positions `after + 1 ..= through` are ACTIVE since `at` until `expires` (µs). Dropped once the sweep passed `through` |
//! | `{p}:open` | hash | per record not yet expired (field `through`): the tokens it admitted minus those used up since (the cap's active count) |
//! | `{p}:staging` | list | while a draw runs: the WAITING list in its drawn order, so far |
//! | `{p}:drawn` | string | the draw's position table: 4 bytes big-endian per arrival `seq` `s`, at byte `4 * (s - 1)` the token's drawn `seq` (0 or past the end: unchanged); in force once the draw is recorded (`draw_at`) |
//! | `{p}:r:<seq / 128>` | hash (a listpack) | the tokens stored WAITING (an admitted token stays so until written EXPIRED, see below), field `seq % 128`: random part (24 bytes), user id (16 bytes), `issued` (8 bytes, µs) and, once noted, `seen` (8 bytes: its last sight, from `note_seen`) |
//! | `{p}:x:<seq>` | string | a token stored EXPIRED, kept [`RedisConfig::expired_retention`]: random part, user, `issued`, `activated`, `expires` (8 bytes each, 0 for none), the reason (`T`, `P`, `A`: `TTL`, `PAID`, `ABANDONED`) |
//! | `{p}:users` | hash | field a user id's 16 bytes: the `seq` of their token while it is stored WAITING (one live token per user; dropped when it is written EXPIRED) |
//!
//! The cursor's `layout` is `2` for a line in this layout; a line an earlier version wrote (a
//! hash per token, no `layout`) is refused by `issue` and `admit` with an error naming it, not
//! misread: let it drain, or delete its keys, before the upgrade.
//!
//! **A draw writes no token.** It keeps the drawn order in one string, `{p}:drawn`, and every
//! script that answers a token's `seq` (`issue`, `find`, `find_with_cursor`) maps the stored
//! one through it (`drawn_seq` in `prelude.lua`, one `GETRANGE`) once the cursor has the draw:
//! a million `HSET`s, most of a draw's time, become a few hundred `SETRANGE`s, as PostgreSQL
//! keeps its draw in `queue_draw_positions` instead of rewriting `queue_tokens.seq`. Admission
//! moves the cursor over the WAITING list, already in the drawn order, and reads no `seq`.
//!
//! **An admission writes no token.** It moves the cursor by `n` and records itself once in
//! `{p}:admissions`: O(1) in `n` (without `abandon_after`), where popping and writing each token
//! blocked Redis for the length of a tick of 100,000. Every script that answers a token derives
//! it (`derive` in `prelude.lua`, the one statement of the rule): stored WAITING and at a
//! position (the shown `seq`) at or below `admitted` means ACTIVE, `activated_at` and
//! `expires_at` the covering record's, read EXPIRED (`TTL`) by the domain from `expires_at` on
//! (`QueueToken::status_at`), as it reads an ACTIVE token the sweep has not reached. What stays
//! per token is written: a use-up, an abandonment, a lapsed token whose user queues again, and
//! the expiry, which pops the head of the WAITING list behind the expired records and writes
//! each token still stored WAITING EXPIRED with its derived times. The cap counts records, not
//! tokens (`derived_active`).
//!
//! Times are integers of microseconds since the Unix epoch (the domain's precision; exact in
//! Lua's doubles until the year 2255). A WAITING or ACTIVE token has no TTL. When a token
//! becomes EXPIRED (sweep, payment, abandonment, or a new issue for its user) its record
//! leaves its bucket for an expired record with a key TTL of
//! [`RedisConfig::expired_retention`] (default a day, on Redis' clock), and its user's entry
//! goes: until then a poll answers EXPIRED, afterwards the token is unknown (401
//! `TOKEN_INVALID`), which bounds the memory of tokens that left the line.
//!
//! # Scripts and what each guarantees
//!
//! Redis runs one script at a time, so each is atomic and serialised against every caller on
//! every instance. Where a script restates a domain rule, a comment in it names the domain
//! function it mirrors; the conformance suite (`port_tests::queue_suite!`) catches a
//! divergence. Scripts that read or write records touch keys they name only while running
//! (a token's bucket and expired record, the users hash, from the namespace they are given):
//! not declared in `KEYS`, which one server allows, and which a cluster allows because they
//! share the namespace's hash tag.
//!
//! - `issue`: for each of its issues in turn (one from the blocking path, those a worker
//!   gathered from the async one: see `aio`), returns the user's live token
//!   (`QueueToken::is_live_at`, on the token as derived), or retires their lapsed ACTIVE one
//!   (writing its derived times) and stores a new WAITING token with the next `seq` after
//!   `issued`, taken only after every check, so a refused issue burns no number; 64
//!   concurrent issues for one user give one token, in one call or in many. An error of one
//!   issue (a corrupt record) answers that issue alone.
//! - `find`, `find_with_cursor`: a token's record as derived (its `seq` mapped through the draw's
//!   table, its admission from the record covering it), and the cursor with it.
//! - `admit`: `AdmissionPolicy::is_due` on the store's clock, `quota` (the active count only
//!   under a cap, from the records), records the `n` oldest WAITING positions as admitted now
//!   until `expiry_for(now)`, advances `admitted` by `n` and, if `n > 0`, sets `last`: no
//!   token read or written. With `abandon_after` it walks the list from the cursor past absent
//!   tokens (`is_present` on the later of `issued` and `seen`): each becomes EXPIRED
//!   (`ABANDONED`, `expires_at = now`, retired like an expired token), `admitted` advances over
//!   both, the record counts the present ones and `abandoned` grows by the skipped. `Busy`
//!   only while a draw of the line is claimed and unfinished.
//! - `expire`: closes the records expired at `now` (`status_at`), then pops the head of the
//!   WAITING list up to the last closed record: each token still stored WAITING becomes
//!   EXPIRED (`TTL`) with its derived times, others (paid, abandoned) are dropped; at most
//!   `limit` written and `4 * limit` popped per call (so a call meeting mostly paid tokens
//!   returns short, and the scheduler's sweep goes on at its next tick). A token leaves the
//!   list in the step that writes it, so concurrent sweeps change each once.
//! - `use_up`: the paying token, if ACTIVE as derived and unexpired at `at`, becomes EXPIRED (`PAID`) with `expires_at = at` and its open record counts one
//!   fewer; no other token is touched (a WAITING token of the payer stays in line).
//!   Idempotent: the first call writes it out of the derivation.
//! - `stats`: issued, cursor, `abandoned` and the active count (records, on the store's
//!   clock), writing nothing.
//! - `note_seen`: one script per batch; moves the `seen` of each token WAITING as derived
//!   forward.
//! - `draw_claim`, `draw_chunk`, `draw_finish`: the draw, in steps so that no script blocks
//!   Redis for long (see the `draw` module; the claimed records are read with plain
//!   `HGETALL`s of their buckets between the steps): a claim with a lease,
//!   idempotent chunks that write a staging list and the position table (no token), and a
//!   finish that checks the table is whole, appends the tokens issued meanwhile, renames the
//!   staging list over the WAITING list and records the draw, atomically. Another instance
//!   finishes a draw whose owner's lease ran out. A claim is refused while admitted tokens
//!   are still at the list's head (the port has nothing admitted before a draw).
//!
//! `cursor` is one `HMGET`, `ping` is `PING`. The cursor's draw is read with it on every
//! cursor read (`QueueCursor::draw`).
//!
//! # Redis Cluster
//!
//! `REDIS_URL` may list several nodes, comma-separated: a Redis Cluster
//! ([`RedisConfig::is_cluster`]; any listed node that answers gives the slot map). Nothing of
//! the layout changes: every key of a line is in its namespace's hash tag, so a line lives in
//! one slot, each script touches one line (its undeclared keys, a token's record or the users
//! hash, are in the same slot, which a cluster allows), and every operation stays one
//! atomic script on that slot's master. Lines spread over the masters by their tags (`main`
//! is `{prefix}`, room `r` is `{prefix:r}`); no command touches two lines or a key outside a
//! line (no `KEYS`, `SCAN` or `FLUSH*`; the tests' clean-up scans each master). `TIME` for the
//! instance's clock asks `main`'s master; admission and expiry run on each line's master's
//! clock, so the masters' clocks should be synchronised (NTP) as one Redis' is with itself.
//!
//! Connections: each pooled connection is the `redis` crate's `ClusterConnection` (one socket
//! per node, opened on demand), with the same timeouts and the same pool and health rules as
//! for one Redis (see `pool`): it does not retry on its own; a connection that met a dead node
//! or a stale route is dropped (only it: the other masters' rooms keep their connections), and
//! a new connection that reads a changed slot map retires every connection opened before it;
//! a `MOVED` reply is retried once on a fresh connection. A script the node
//! does not know (`NOSCRIPT`, e.g. on a promoted replica that never ran it) is loaded on that
//! slot's master only, then sent again. Readiness (`ping`) is `CLUSTER INFO` of a node that
//! answers: ready while it says `cluster_state:ok`.
//!
//! **A master failing over.** When a master dies, calls for its lines fail at once with
//! `Unavailable` (its port refuses, or the connect timeout passes), so their requests answer
//! 503; lines on the other masters keep answering, provided the cluster runs with
//! `cluster-require-full-coverage no` (otherwise every node refuses every command while any
//! slot is uncovered). After `cluster-node-timeout` the replica is elected and takes the slots
//! (about 2 s with a 1 s node timeout, measured by `tests/cluster_failover.rs`); the next
//! connection reads the new slot map and the lines answer again, without a restart.
//!
//! **Writes a failover must not lose.** Replication is asynchronous: a write the old master
//! acknowledged may not have reached the replica that replaces it. So on a cluster (or with
//! [`RedisConfig::replica_acks`] set) an issue, an admission that admitted, and a use-up are
//! followed, on the same socket, by `WAIT n` ([`RedisTimeouts::replica_ack`], 0.75 s by
//! default): a call whose write no replica confirmed fails with `Unavailable` (503) though it
//! ran. For an issue that is safe: the client retries with the same user and gets the token
//! the first call stored if it survived (200, `created: false`), or a new one if the failover
//! lost it; no user ever holds two, and no 201 hands out a token a failover can take back. An
//! issue that finds the user's token waits too (the call that stored it may have failed this
//! very check). An admission not confirmed is one the scheduler logs; its next tick reads the
//! cursor as the failover left it, so positions stay exact and no token is admitted twice. A
//! master with no replica attached (its replica took over and none has joined since) has no
//! replica that could be promoted without the write, so its writes are accepted unconfirmed
//! (logged), and for 5 s its lines ask `ROLE` instead of waiting out `WAIT` on every write.
//! Draw steps and expiry sweeps do not wait: a lost one is done again (a draw's chunks are
//! idempotent and its order the seed's; a sweep writes the same again), and an admission
//! confirmed afterwards confirms every earlier write of that master (`WAIT` counts offsets).
//! `WAIT` does not make a write durable against losing both a master and its replica, nor
//! against a replica promoted while it was cut off for less than the cluster's validity window.
//!
//! # Time source
//!
//! Admission, expiry sweeps and `stats` read Redis' clock (`TIME` inside the script) by
//! default ([`TimeSource::Server`]), never the instance's, so instances whose clocks disagree
//! still admit at most N per interval; `NotDue { wait }` is measured on that clock. Tests
//! inject a clock instead ([`RedisQueue::with_clock`]); the script then takes "now" as an
//! argument. `issue` and `use_up` take the caller's time, as the port says.
//!
//! # Outages
//!
//! Connections come from an r2d2 pool, opened on demand (so [`RedisQueue::new`] succeeds with
//! Redis down and the service reports not ready until it is back), with connect, read and
//! write timeouts on every socket ([`RedisTimeouts`]): with Redis down or hung a call fails
//! with `StoreError::Unavailable` after at most checkout + write + read (4 s by default), and
//! `ping` fails. Once a connection attempt has failed, calls fail at once (no waiting) until
//! Redis answers again; r2d2 keeps retrying in the background and one call per
//! `probe_interval` asks the pool too. A connection that saw an I/O error is dropped and (on one
//! Redis) retires every pooled connection opened before it, so once Redis is back the next calls open
//! fresh connections: no restart. Data that Redis loses in a restart without persistence is
//! gone (the line starts again at `seq` 1); that is the operator's choice of Redis
//! persistence, not this adapter's.
//!
//! A script whose reply is lost after it was sent may have run. What that means, per call:
//! - `issue`: the caller answers 503; a retry finds the token the lost call stored and returns
//!   it (200, `created: false`): the user keeps one place, no number is lost. The front door's
//!   async path (`aio`) makes that retry itself, at most twice, when the call met `MOVED` or a
//!   connection found dropped well within the read timeout (a socket left stale by a restart
//!   or a failover): the script is idempotent per user, and a token found carrying the call's
//!   own planned random part is the first run's, so it still answers `created: true`.
//! - `admit`: the scheduler logs the error; its next tick reads the cursor the lost call left
//!   (usually `NotDue`), so no interval admits twice.
//! - `expire_tokens`, `use_up`: idempotent; the next sweep or nothing is needed (`use_up`
//!   failing leaves the token ACTIVE until its TTL, but the payment store records that it
//!   paid, so it cannot pay again).
//! - reads (`find`, `find_with_cursor`, `cursor`, `stats`, `ping`): retried once on a fresh
//!   connection when the first attempt met a dropped connection quickly; they change nothing.

pub mod aio;
pub mod config;
#[cfg(feature = "testing")]
pub mod testing;

mod codec;
mod draw;
mod keys;
mod pool;
mod scripts;

use std::fmt;
use std::sync::Arc;
use std::time::Instant;

use domain::clock::{Clock, StoreTime};
use domain::ids::UserId;
use domain::ports::{IssueOutcome, QueueLines, QueueStore, StoreError};
use domain::queue::{AdmissionOutcome, AdmissionPolicy, QueueCursor, QueueStats, QueueToken, TokenValue};
use domain::room::{DrawOutcome, RoomId};
use redis::RedisResult;
use time::{Duration, OffsetDateTime};

pub use crate::aio::AsyncRedisLines;
pub use crate::config::{ConfigError, RedisConfig, RedisTimeouts};
pub use crate::draw::DrawTuning;
use crate::keys::{Keys, Place};
use crate::pool::{Client, Conn, Connection, Health, Manager};
use crate::scripts::Scripts;

/// Whose clock admission, expiry sweeps and `stats` go by.
#[derive(Clone, Default)]
pub enum TimeSource {
    /// Redis' own clock (`TIME`), the same for every instance: production.
    #[default]
    Server,
    /// An injected clock: tests move a `ManualClock` instead of sleeping.
    Clock(Arc<dyn Clock>),
}

impl fmt::Debug for TimeSource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Server => f.write_str("Server"),
            Self::Clock(_) => f.write_str("Clock(..)"),
        }
    }
}

/// The waiting queue on Redis (see the crate docs): the line of one room (`main` unless built
/// by [`RedisQueue::line`]). Lines built from one queue share its pool and configuration.
#[derive(Clone)]
pub struct RedisQueue {
    pool: r2d2::Pool<Manager>,
    health: Arc<Health>,
    timeouts: RedisTimeouts,
    /// The configured prefix (without braces), from which every line's namespace is made.
    prefix: String,
    /// The room whose line this is.
    room: RoomId,
    keys: Keys,
    scripts: Arc<Scripts>,
    time: TimeSource,
    draw: DrawTuning,
    /// Expired tokens' key TTL, in ms (the scripts' `PEXPIRE` argument).
    retain_ms: String,
    /// A read that met a dropped connection sooner than this after it started is retried once.
    retry_within: std::time::Duration,
    redacted_url: String,
    /// Whether the URL named a Redis Cluster.
    cluster: bool,
    /// Replicas that must confirm an issue, an admission or a use-up (`WAIT`); 0: none.
    replica_acks: u32,
    /// Lines (by namespace) whose master was last found with no replica attached, and when.
    alone: Arc<std::sync::Mutex<std::collections::HashMap<String, Instant>>>,
}

impl fmt::Debug for RedisQueue {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RedisQueue")
            .field("url", &self.redacted_url)
            .field("namespace", &self.keys.namespace)
            .field("room", &self.room)
            .field("cluster", &self.cluster)
            .field("replica_acks", &self.replica_acks)
            .field("time", &self.time)
            .finish_non_exhaustive()
    }
}

/// What a read does on its connection (it may run twice, see [`RedisQueue::read`]).
type Op<'a, T> = dyn Fn(&mut Connection) -> RedisResult<T> + 'a;

impl RedisQueue {
    /// A queue on the Redis of `cfg`, timed on Redis' clock. Connects lazily: it succeeds when
    /// Redis is down, and calls fail with `Unavailable` until it is back.
    ///
    /// # Errors
    /// [`ConfigError`] when the configuration cannot work whatever the server does.
    pub fn new(cfg: &RedisConfig) -> Result<Self, ConfigError> {
        cfg.validate()?;
        let client = Client::new(&cfg.nodes(), &cfg.timeouts).map_err(|e| ConfigError::InvalidUrl(e.to_string()))?;
        let cluster = client.is_cluster();
        let health = Arc::new(Health::default());
        let pool = r2d2::Pool::builder()
            .max_size(cfg.pool_size)
            // Open on demand: no background reconnect loop while Redis is down.
            .min_idle(Some(0))
            .connection_timeout(cfg.timeouts.checkout)
            // The checkout test is the epoch comparison, an atomic load: no PING round trip.
            .test_on_check_out(true)
            // Failures reach the caller as `StoreError`s and are logged once where handled.
            .error_handler(Box::new(r2d2::NopErrorHandler))
            .build_unchecked(Manager::new(client, cfg.timeouts, Arc::clone(&health)));
        Ok(Self {
            pool,
            health,
            timeouts: cfg.timeouts,
            prefix: cfg.prefix.clone(),
            room: RoomId::main(),
            keys: Keys::new(&cfg.prefix, &RoomId::main()),
            scripts: Arc::new(Scripts::new()),
            time: TimeSource::Server,
            draw: DrawTuning::default(),
            retain_ms: cfg.expired_retention.as_millis().max(1).to_string(),
            retry_within: cfg.timeouts.read,
            redacted_url: cfg.redacted_url(),
            cluster,
            replica_acks: cfg.effective_replica_acks(),
            alone: Arc::default(),
        })
    }

    /// Times admission, expiry and `stats` on `clock` instead of Redis' (tests).
    #[must_use]
    pub fn with_clock(mut self, clock: Arc<dyn Clock>) -> Self {
        self.time = TimeSource::Clock(clock);
        self
    }

    /// Chunks, lease and pace of [`QueueStore::draw`] (tests and benchmarks slow it down or
    /// stop it half-way; see [`DrawTuning`]).
    #[must_use]
    pub fn with_draw_tuning(mut self, tuning: DrawTuning) -> Self {
        self.draw = tuning;
        self
    }

    /// The line of `room` on the same Redis, pool, clock and configuration: keys under
    /// `{prefix:room}` (`{prefix}` for `main`), so each line's keys share one cluster slot.
    #[must_use]
    pub fn line(&self, room: &RoomId) -> Self {
        Self { room: room.clone(), keys: Keys::new(&self.prefix, room), ..self.clone() }
    }

    /// Every room's line on this queue's Redis ([`QueueLines`]).
    #[must_use]
    pub fn lines(&self) -> RedisLines {
        RedisLines { base: self.line(&RoomId::main()) }
    }

    /// The room whose line this is.
    #[must_use]
    pub fn room(&self) -> &RoomId {
        &self.room
    }

    /// Whether `value` is a token of this line (a value names its room).
    /// Where `value` is stored in this line; `None` when it is no token of this line.
    fn place(&self, value: &TokenValue) -> Option<Place> {
        if !self.ours(value) {
            return None;
        }
        self.keys.place(value)
    }

    fn ours(&self, value: &TokenValue) -> bool {
        value.is_in(&self.room)
    }

    /// The clock admission goes by.
    #[must_use]
    pub fn time_source(&self) -> &TimeSource {
        &self.time
    }

    /// The key namespace, braces included (`{concert}`, `{concert:room}` for a room's line):
    /// every key of this line starts with it and a colon.
    #[must_use]
    pub fn namespace(&self) -> &str {
        &self.keys.namespace
    }

    /// The scripts' "now" argument: the injected clock's time, or '' for Redis' `TIME`.
    fn now_arg(&self) -> String {
        match &self.time {
            TimeSource::Server => String::new(),
            TimeSource::Clock(clock) => codec::to_micros(clock.now()).to_string(),
        }
    }

    /// A pooled connection, waiting at most the checkout timeout, and failing at once while
    /// Redis is known unreachable (see `pool`): the pool is asked in short slices, so a call
    /// that started just before a connection attempt failed gives up as soon as it did.
    fn checkout(&self) -> Result<r2d2::PooledConnection<Manager>, StoreError> {
        const SLICE: std::time::Duration = std::time::Duration::from_millis(50);
        let unreachable = || StoreError::Unavailable("Redis unreachable: the last connection attempt failed".into());
        // An idle connection may still be good (the failed attempt may have been a fluke
        // under load), so only an empty pool fails at once.
        if self.health.unreachable()
            && self.pool.state().idle_connections == 0
            && !self.health.may_probe(self.timeouts.probe_interval)
        {
            return Err(unreachable());
        }
        let deadline = Instant::now() + self.timeouts.checkout;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.pool.get_timeout(left.min(SLICE)) {
                Ok(conn) => return Ok(conn),
                Err(_) if self.health.unreachable() => return Err(unreachable()),
                Err(e) if left <= SLICE => {
                    return Err(StoreError::Unavailable(format!("no Redis connection free in time: {e}")))
                }
                Err(_) => {}
            }
        }
    }

    /// Runs `op` on a pooled connection. On a lost connection (or, on a cluster, a stale
    /// route: see `pool`), drops it and retires every connection opened before it. A `MOVED`
    /// reply (the command did not run; the slot has a new master) is retried once on a fresh
    /// connection, which reads the slot map anew.
    fn attempt<T>(&self, op: &Op<'_, T>) -> Result<T, (StoreError, bool)> {
        match self.attempt_on_one(op) {
            Err(Failure::Moved(_)) => self.attempt_on_one(op),
            other => other,
        }
        .map_err(|f| match f {
            Failure::Store(e, dropped) => (e, dropped),
            Failure::Moved(e) => (e, false),
        })
    }

    fn attempt_on_one<T>(&self, op: &Op<'_, T>) -> Result<T, Failure> {
        let mut conn = self.checkout().map_err(|e| Failure::Store(e, false))?;
        // The cluster client keeps its sockets and slot map in `RefCell`s: a bug there must
        // cost this connection and this call (503), never the worker.
        let result = match std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| op(&mut conn.inner))) {
            Ok(result) => result,
            Err(_) => {
                self.retire(&mut conn);
                return Err(Failure::Store(
                    StoreError::Unavailable("the Redis client failed on this call".into()),
                    false,
                ));
            }
        };
        if result.is_ok() {
            self.health.answered();
        }
        result.map_err(|e| {
            if codec::connection_lost(&e) || codec::stale_route(&e) {
                self.retire(&mut conn);
            }
            if codec::moved(&e) {
                Failure::Moved(codec::store_error(&e))
            } else {
                Failure::Store(codec::store_error(&e), e.is_connection_dropped())
            }
        })
    }

    fn note_alone(&self, alone: bool) {
        let mut lines = self.alone.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        if alone {
            lines.insert(self.keys.namespace.clone(), Instant::now());
        } else {
            lines.remove(&self.keys.namespace);
        }
    }

    /// After a write that must survive a failover, on the connection it was sent on: waits
    /// for `replica_acks` replicas to have it (see the crate docs, "Redis Cluster"). `Ok(())`
    /// when none are asked for.
    fn confirm(&self, conn: &mut Connection) -> RedisResult<Result<(), StoreError>> {
        if self.replica_acks == 0 {
            return Ok(Ok(()));
        }
        let ns = &self.keys.namespace;
        // Found alone lately: ask first, rather than wait out `WAIT`'s timeout on every write.
        let alone_lately = self
            .alone
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .get(ns)
            .is_some_and(|at| at.elapsed() < ALONE_RECHECK);
        if alone_lately {
            if conn.attached_replicas()? == 0 {
                self.note_alone(true);
                return Ok(Ok(()));
            }
            self.note_alone(false);
        }
        // In slices, each well inside the socket's read timeout, so a slow `WAIT` reply is
        // never taken for a lost connection.
        let deadline = Instant::now() + self.timeouts.replica_ack;
        let slice = self.timeouts.read / 4;
        let mut acked = 0;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                break;
            }
            acked = conn.confirm(self.replica_acks, left.min(slice))?;
            if acked >= self.replica_acks {
                return Ok(Ok(()));
            }
        }
        // A master with no replica attached (its replica took over from it and none joined
        // since) has nothing that a failover could promote without this write: it is as safe
        // as on one Redis, and refusing would keep the master's rooms down until an operator
        // attaches a replica.
        let attached = conn.attached_replicas()?;
        Ok(if attached == 0 {
            tracing::warn!(namespace = %ns, "the Redis master of this line has no replica attached: its writes are not confirmed by any");
            self.note_alone(true);
            Ok(())
        } else {
            Err(StoreError::Unavailable(format!(
                "the write was not confirmed by {} replica(s) within {:?} ({acked} did)",
                self.replica_acks, self.timeouts.replica_ack
            )))
        })
    }

    /// Drops a connection found lost. On one Redis, also every connection opened before it (the
    /// server restarted: they are all dead); on a cluster only this one, since the other
    /// masters are fine: a changed slot map retires the rest (see `pool`).
    fn retire(&self, conn: &mut Conn) {
        conn.mark_broken();
        if !self.cluster {
            let epoch = self.health.retire_all();
            tracing::debug!(epoch, "a Redis connection was lost; retiring every pooled connection");
        }
    }

    /// One attempt, never retried: for writes, whose lost reply may mean they ran (see the
    /// crate docs).
    fn once<T>(&self, op: &Op<'_, T>) -> Result<T, StoreError> {
        self.attempt(op).map_err(|(e, _)| e)
    }

    /// A read: retried once, on a fresh connection, when the first attempt met a dropped
    /// connection quickly (a stale pooled connection after a Redis restart), so the retry
    /// still fits in the call's time budget.
    fn read<T>(&self, op: &Op<'_, T>) -> Result<T, StoreError> {
        let started = Instant::now();
        match self.attempt(op) {
            Err((_, true)) if started.elapsed() < self.retry_within => self.once(op),
            other => other.map_err(|(e, _)| e),
        }
    }
}

/// How long a line whose master was found with no replica attached asks `ROLE` before each
/// lasting write instead of waiting out `WAIT` (see [`RedisQueue::confirm`]).
const ALONE_RECHECK: std::time::Duration = std::time::Duration::from_secs(5);

/// Why one attempt failed.
enum Failure {
    /// The error, and whether the connection was found dropped (a read may retry).
    Store(StoreError, bool),
    /// The slot moved: the command did not run, so it may run again on a fresh connection.
    Moved(StoreError),
}

/// A script that writes is this store's commit: sent only while its caller still waits (the
/// commit agreement of `domain::call`), so a caller answered 503 never has it sent. (Admission
/// and expiry run in the scheduler, under no caller: they always may.)
fn commit_point() -> Result<(), StoreError> {
    if domain::call::commit_point() {
        Ok(())
    } else {
        Err(StoreError::Timeout("the caller gave up before the write was sent".into()))
    }
}

fn micros(d: Duration) -> i64 {
    i64::try_from(d.whole_microseconds()).unwrap_or(i64::MAX)
}

fn micros_std(d: std::time::Duration) -> i64 {
    i64::try_from(d.as_micros()).unwrap_or(i64::MAX)
}

impl QueueStore for RedisQueue {
    fn issue(&self, user: UserId, value: TokenValue, now: OffsetDateTime) -> Result<IssueOutcome, StoreError> {
        if !self.ours(&value) {
            return Err(StoreError::Internal(format!("a token of another room issued in the line of {}", self.room)));
        }
        let random = keys::random_part(&value).ok_or_else(|| codec::corrupt("a planned token value"))?;
        commit_point()?;
        let k = &self.keys;
        let issued_us = codec::to_micros(now);
        let (replies, confirmed) = self.once(&|c| {
            let call = self.scripts.issue_call(k, &self.retain_ms, [(user, &random[..], issued_us)]);
            let replies: Vec<codec::Reply> = call.invoke(c)?;
            // Also when the user's token was found: the call that stored it may have failed
            // this very check, and a 200 must not hand out a token a failover can lose.
            Ok((replies, self.confirm(c)?))
        })?;
        let asked = codec::Asked { room: &self.room, user, random: &random, issued_us };
        let outcome =
            codec::issue_outcomes(&replies, &[asked])?.pop().ok_or_else(|| codec::corrupt("issue reply"))??;
        confirmed?;
        Ok(outcome)
    }

    fn find(&self, value: &TokenValue) -> Result<Option<QueueToken>, StoreError> {
        let Some(place) = self.place(value) else { return Ok(None) };
        let fields: Option<codec::Reply> =
            self.read(&|c| self.scripts.find_call(&self.keys, &place, false).invoke(c))?;
        fields.map(|f| codec::token(value.clone(), &f, 0)).transpose()
    }

    fn find_with_cursor(&self, value: &TokenValue) -> Result<Option<(QueueToken, QueueCursor)>, StoreError> {
        let Some(place) = self.place(value) else { return Ok(None) };
        let reply: Option<codec::Reply> = self.read(&|c| self.scripts.find_call(&self.keys, &place, true).invoke(c))?;
        reply.map(|f| Ok((codec::token(value.clone(), &f, 0)?, codec::cursor(&f, codec::TOKEN_FIELDS)?))).transpose()
    }

    fn cursor(&self) -> Result<QueueCursor, StoreError> {
        let fields: Vec<Option<String>> = self.read(&|c| {
            redis::cmd("HMGET")
                .arg(&self.keys.cursor)
                .arg(&["admitted", "last", "epoch", "draw_at", "draw_entrants", "draw_seed"])
                .query(c)
        })?;
        codec::cursor(&fields, 0)
    }

    fn admit(&self, policy: &AdmissionPolicy) -> Result<AdmissionOutcome, StoreError> {
        let k = &self.keys;
        let now = self.now_arg();
        let cap = policy.max_active.map(|m| m.to_string()).unwrap_or_default();
        let abandon_after = policy.abandon_after.map(|d| micros(d).to_string()).unwrap_or_default();
        let (reply, confirmed): (Vec<String>, _) = self.once(&|c| {
            let reply: Vec<String> = self
                .scripts
                .admit
                .key(&k.cursor)
                .key(&k.waiting)
                .key(&k.admissions)
                .key(&k.open)
                .arg(&k.namespace)
                .arg(&now)
                .arg(policy.batch)
                .arg(micros(policy.interval))
                .arg(micros(policy.active_ttl))
                .arg(&cap)
                .arg(&abandon_after)
                .arg(&self.retain_ms)
                .invoke(c)?;
            let admitted = reply.first().is_some_and(|s| s == "admitted");
            Ok((reply, if admitted { self.confirm(c)? } else { Ok(()) }))
        })?;
        // Not confirmed: the scheduler logs it and its next tick reads the cursor this call
        // left (usually `NotDue`), as after a lost reply.
        confirmed?;
        let number = |i: usize| reply.get(i).and_then(|s| s.parse::<i64>().ok()).ok_or_else(|| codec::corrupt("admit"));
        match reply.first().map(String::as_str) {
            Some("wait") => Ok(AdmissionOutcome::NotDue { wait: Duration::microseconds(number(1)?) }),
            Some("admitted") => {
                Ok(AdmissionOutcome::of(u64::try_from(number(1)?).unwrap_or(0), u64::try_from(number(2)?).unwrap_or(0)))
            }
            // A draw of this line is claimed and unfinished: admission waits for its order.
            Some("drawing") => Ok(AdmissionOutcome::Busy),
            _ => Err(codec::corrupt("admit reply")),
        }
    }

    fn expire_tokens(&self, limit: u32) -> Result<u64, StoreError> {
        let k = &self.keys;
        let now = self.now_arg();
        let changed: u64 = self.once(&|c| {
            self.scripts
                .expire
                .key(&k.cursor)
                .key(&k.waiting)
                .key(&k.admissions)
                .key(&k.open)
                .key(&k.drawn)
                .arg(&k.namespace)
                .arg(&now)
                .arg(limit)
                .arg(&self.retain_ms)
                .invoke(c)
        })?;
        Ok(changed)
    }

    fn use_up(&self, value: &TokenValue, at: OffsetDateTime) -> Result<(), StoreError> {
        let Some(place) = self.place(value) else { return Ok(()) };
        commit_point()?;
        let k = &self.keys;
        let at = codec::to_micros(at).to_string();
        let confirmed = self.once(&|c| {
            let _changed: i64 = self
                .scripts
                .use_up
                .key(&k.cursor)
                .key(&k.drawn)
                .key(&k.admissions)
                .key(&k.open)
                .arg(&k.namespace)
                .arg(place.seq)
                .arg(&place.random[..])
                .arg(&at)
                .arg(&self.retain_ms)
                .invoke(c)?;
            self.confirm(c)
        })?;
        confirmed
    }

    fn stats(&self) -> Result<QueueStats, StoreError> {
        let k = &self.keys;
        let now = self.now_arg();
        let f: Vec<Option<String>> = self.read(&|c| {
            self.scripts.stats.key(&k.issued).key(&k.cursor).key(&k.admissions).key(&k.open).arg(&now).invoke(c)
        })?;
        let issued_through = codec::int(&f, 0, "issued")?;
        let cursor = codec::cursor(&f, 1)?;
        let count = |i, name| codec::int(&f, i, name).map(|n| u64::try_from(n).unwrap_or(0));
        let after = 1 + codec::CURSOR_FIELDS;
        Ok(QueueStats {
            // A WAITING token leaves the line only by admission (see `domain::queue`).
            waiting: u64::try_from(issued_through - cursor.admitted_through).unwrap_or(0),
            active: count(after + 1, "active")?,
            issued_through,
            cursor,
            now: codec::from_micros(codec::int(&f, after + 2, "now")?)?,
            abandoned: count(after, "abandoned")?,
        })
    }

    /// `PING` on one Redis; on a cluster, `cluster_state:ok` from a node (see the crate docs,
    /// "Redis Cluster").
    fn ping(&self) -> Result<(), StoreError> {
        self.read(&Connection::health)?.map_err(StoreError::Unavailable)
    }

    fn draw(&self, opens_at: OffsetDateTime, seed: u64) -> Result<DrawOutcome, StoreError> {
        self.run_draw(opens_at, seed)
    }

    fn note_seen(&self, values: &[TokenValue], at: OffsetDateTime) -> Result<(), StoreError> {
        let places: Vec<Place> = values.iter().filter_map(|v| self.place(v)).collect();
        if places.is_empty() {
            return Ok(());
        }
        commit_point()?;
        let at = codec::to_micros(at).to_string();
        let k = &self.keys;
        let _moved: i64 = self.once(&|c| {
            let mut script = self.scripts.note_seen.prepare_invoke();
            script.key(&k.cursor).key(&k.drawn).key(&k.admissions).arg(&k.namespace).arg(&at);
            for place in &places {
                script.arg(place.seq).arg(&place.random[..]);
            }
            script.invoke(c)
        })?;
        Ok(())
    }
}

/// Every room's line on one Redis (see [`RedisQueue::line`]).
#[derive(Debug, Clone)]
pub struct RedisLines {
    base: RedisQueue,
}

impl QueueLines for RedisLines {
    fn line(&self, room: &RoomId) -> Arc<dyn QueueStore> {
        Arc::new(self.base.line(room))
    }
}

/// Redis' clock (`TIME`), the one every instance sharing this Redis goes by (see
/// `domain::clock::StoreTime`); the injected clock in tests.
impl StoreTime for RedisQueue {
    fn read_time(&self) -> Result<OffsetDateTime, StoreError> {
        if let TimeSource::Clock(clock) = &self.time {
            return Ok(clock.now());
        }
        // On a cluster, always the clock of `main`'s master (while it answers), not any
        // node's: the instance's clock follows one source.
        let main = Keys::new(&self.prefix, &RoomId::main());
        let (secs, micros): (i64, i64) = self.read(&|c| {
            let value = c.on_master_of(&main.cursor, &redis::cmd("TIME"))?;
            Ok(redis::from_redis_value(value)?)
        })?;
        codec::from_micros(secs.saturating_mul(1_000_000).saturating_add(micros))
    }
}
