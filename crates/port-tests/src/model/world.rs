//! The small, fixed world every model case starts from: three users, one concert with two
//! schedules of a few cheap seats, the static policy, the waiting room's starting settings and
//! the starting balances. It is small on purpose: with two live holds per user, five seats and
//! balances of zero, ten thousand won and just under the limit, every refusal of every use case
//! is a few steps away from any state.
//!
//! Ids are fixed (each case has a store of its own), so a shrunk failure reads the same on every
//! run.

use domain::catalogue::{Concert, NewConcert, NewSchedule, Seat};
use domain::ids::{ConcertId, LedgerEntryId, ReservationId, ScheduleId, SeatId, UserId};
use domain::money::Won;
use domain::queue::{AdmissionPolicy, QueueSettings, TokenValue};
use domain::service::Policy;
use time::{Duration, OffsetDateTime};
use uuid::Uuid;

/// Users of the world.
pub const USERS: usize = 3;

/// The `Idempotency-Key`s clients use; shared by charges and payments of one user, so a key of
/// a charge presented with a payment (a different request) comes up too.
pub const KEYS: [&str; 3] = ["key-a", "key-b", "key-c"];

/// One seat of the world.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SeatSpec {
    /// Index of its schedule in [`SCHEDULES`].
    pub schedule: usize,
    /// Its number in the schedule.
    pub number: u32,
    /// Its price in won.
    pub price: i64,
}

/// Every seat, schedule by schedule, by number.
pub const SEATS: [SeatSpec; 7] = [
    SeatSpec { schedule: 0, number: 1, price: 3_000 },
    SeatSpec { schedule: 0, number: 2, price: 5_000 },
    SeatSpec { schedule: 0, number: 3, price: 8_000 },
    SeatSpec { schedule: 1, number: 1, price: 2_000 },
    SeatSpec { schedule: 1, number: 2, price: 4_000 },
    SeatSpec { schedule: 2, number: 1, price: 6_000 },
    SeatSpec { schedule: 2, number: 2, price: 1_000 },
];

/// How long after the start of a case each schedule starts: the first a week later, the
/// second two hours later, so a clock move can reach it (then its seats are `NotFound`), the
/// third (the room's concert) three days later.
pub const SCHEDULES: [Duration; 3] = [Duration::days(7), Duration::hours(2), Duration::days(3)];

/// The concert of each schedule (index into [`CONCERTS`]): the first two are `main`'s concert,
/// the third is the concert room `a` sells.
pub const SCHEDULE_CONCERT: [usize; 3] = [0, 0, 1];

/// The concerts: titles.
pub const CONCERTS: [&str; 2] = ["Model Symphony", "Room Rhapsody"];

/// A room other than `main`, created at set-up.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RoomSpec {
    /// Its slug.
    pub id: &'static str,
    /// The concerts it gates (indices into [`CONCERTS`]).
    pub concerts: &'static [usize],
    /// When joining opens, after the case's start.
    pub prequeue_opens: Option<Duration>,
    /// When it opens, after the case's start.
    pub opens: Option<Duration>,
    /// Whether the pre-queue is drawn at the opening.
    pub draw_at_open: bool,
    /// `abandonAfterSecs` (0: never).
    pub abandon_after_secs: i64,
    /// N.
    pub batch: u32,
    /// M, in seconds.
    pub interval_secs: i64,
    /// The ACTIVE TTL, in seconds.
    pub ttl_secs: i64,
}

/// The rooms besides `main`, by id (the order `tick_rooms` answers in): `a` sells the second
/// concert, takes joiners 10 s after the start, opens 150 s after it with a draw, drops buyers
/// silent for 30 s, and admits two every 30 s; `b` is open from the start, gates nothing (its
/// tokens open no concert: every one is another room's) and admits one a minute.
pub const ROOMS: [RoomSpec; 2] = [
    RoomSpec {
        id: "a",
        concerts: &[1],
        prequeue_opens: Some(Duration::seconds(10)),
        opens: Some(Duration::seconds(150)),
        draw_at_open: true,
        abandon_after_secs: 30,
        batch: 2,
        interval_secs: 30,
        ttl_secs: 600,
    },
    RoomSpec {
        id: "b",
        concerts: &[],
        prequeue_opens: None,
        opens: None,
        draw_at_open: false,
        abandon_after_secs: 0,
        batch: 1,
        interval_secs: 60,
        ttl_secs: 600,
    },
];

/// The room that gates concert `c`: `Some(index into ROOMS)`, or `None` for `main`.
#[must_use]
pub fn room_of_concert(c: usize) -> Option<usize> {
    ROOMS.iter().position(|r| r.concerts.contains(&c))
}

/// The room that gates schedule `i`'s concert (`None`: `main`).
#[must_use]
pub fn room_of_schedule(i: usize) -> Option<usize> {
    room_of_concert(SCHEDULE_CONCERT[i])
}

/// Room `r`'s id.
#[must_use]
pub fn room_id(r: usize) -> domain::room::RoomId {
    domain::room::RoomId::parse(ROOMS[r].id).expect("the world's room ids are slugs")
}

/// Room `r`'s draft, for a case started at `t0`.
#[must_use]
pub fn room_draft(r: usize, t0: OffsetDateTime) -> domain::room::RoomDraft {
    let spec = ROOMS[r];
    domain::room::RoomDraft {
        id: spec.id.to_owned(),
        name: format!("Room {}", spec.id),
        concerts: spec.concerts.iter().map(|&c| concert_of(c)).collect(),
        opens_at: spec.opens.map(|d| t0 + d),
        prequeue_opens_at: spec.prequeue_opens.map(|d| t0 + d),
        draw_at_open: Some(spec.draw_at_open),
        abandon_after_secs: Some(spec.abandon_after_secs),
        settings: domain::queue::SettingsChange {
            paused: Some(false),
            admit_batch: Some(i64::from(spec.batch)),
            admit_interval_secs: Some(spec.interval_secs),
            active_ttl_secs: Some(spec.ttl_secs),
            max_active: Some(None),
        },
    }
}

/// The balances each user starts with, made by charges at set-up (so each ledger starts with
/// them): nothing, enough for a seat or two, and 5,000 won under the balance limit.
pub const STARTING_CHARGES: [&[i64]; USERS] = [
    &[],
    &[10_000],
    &[
        1_000_000_000,
        1_000_000_000,
        1_000_000_000,
        1_000_000_000,
        1_000_000_000,
        1_000_000_000,
        1_000_000_000,
        1_000_000_000,
        1_000_000_000,
        999_995_000,
    ],
];

/// The static policy: holds of 300 s, two live holds per user, keys kept 900 s, and sweeps of
/// two rows, at most five per tick. Every sweep of the world fits one tick (at most one stored
/// ACTIVE token per user, one claim per seat, one record per user and key), so each sweep's
/// count is exact, and it still takes several batches.
#[must_use]
pub fn policy() -> Policy {
    Policy {
        hold: Duration::seconds(300),
        max_holds_per_user: 2,
        idempotency_ttl: Duration::seconds(900),
        sweep_batch: 2,
        sweep_batches_per_tick: 5,
        room_defaults: starting_settings(),
        // The reference checks the rooms of a check one after another, in room order, as
        // atomic phases; checks of several rooms at once are covered by the rooms suite
        // (`rooms::rooms_are_checked_at_once_and_answered_in_room_order`).
        room_checks_at_once: 1,
    }
}

/// The waiting room's settings written at set-up: two per minute, ACTIVE for ten minutes.
#[must_use]
pub fn starting_settings() -> QueueSettings {
    QueueSettings {
        paused: false,
        admission: AdmissionPolicy {
            batch: 2,
            interval: Duration::seconds(60),
            active_ttl: Duration::seconds(600),
            max_active: None,
            abandon_after: None,
        },
    }
}

fn id(kind: u128, n: usize) -> Uuid {
    Uuid::from_u128((kind << 64) | n as u128)
}

/// User `i`.
#[must_use]
pub fn user(i: usize) -> UserId {
    UserId::from_uuid(id(0x0001, i))
}

/// The concert of `main` (the first of [`CONCERTS`]).
#[must_use]
pub fn concert() -> ConcertId {
    concert_of(0)
}

/// Concert `c` of [`CONCERTS`].
#[must_use]
pub fn concert_of(c: usize) -> ConcertId {
    ConcertId::from_uuid(id(0x0002, c))
}

/// Schedule `i`.
#[must_use]
pub fn schedule(i: usize) -> ScheduleId {
    ScheduleId::from_uuid(id(0x0003, i))
}

/// Seat `i` of [`SEATS`].
#[must_use]
pub fn seat(i: usize) -> SeatId {
    SeatId::from_uuid(id(0x0004, i))
}

/// A schedule no store knows.
#[must_use]
pub fn unknown_schedule() -> ScheduleId {
    ScheduleId::from_uuid(id(0x0dea, 1))
}

/// A seat no store knows.
#[must_use]
pub fn unknown_seat() -> SeatId {
    SeatId::from_uuid(id(0x0dea, 2))
}

/// A reservation no store knows.
#[must_use]
pub fn unknown_reservation() -> ReservationId {
    ReservationId::from_uuid(id(0x0dea, 3))
}

/// A ledger entry no store knows.
#[must_use]
pub fn unknown_entry() -> LedgerEntryId {
    LedgerEntryId::from_uuid(id(0x0dea, 4))
}

/// A well-formed token no store issued.
#[must_use]
pub fn unknown_token() -> TokenValue {
    TokenValue::from_bytes([0xde; 32])
}

/// A bearer string that is not a token at all.
pub const MALFORMED_TOKEN: &str = "not-a-token";

/// The seat's domain value.
#[must_use]
pub fn seat_value(i: usize) -> Seat {
    let spec = SEATS[i];
    Seat { id: seat(i), schedule_id: schedule(spec.schedule), number: spec.number, price: Won::new(spec.price) }
}

/// The catalogue written at set-up, relative to the case's start `t0`: every concert.
#[must_use]
pub fn catalogue(t0: OffsetDateTime) -> Vec<NewConcert> {
    (0..CONCERTS.len())
        .map(|c| {
            let schedules = SCHEDULES
                .iter()
                .enumerate()
                .filter(|(i, _)| SCHEDULE_CONCERT[*i] == c)
                .map(|(i, after)| NewSchedule {
                    id: schedule(i),
                    concert_id: concert_of(c),
                    starts_at: t0 + *after,
                    seats: (0..SEATS.len()).filter(|&s| SEATS[s].schedule == i).map(seat_value).collect(),
                })
                .collect();
            NewConcert {
                concert: Concert {
                    id: concert_of(c),
                    title: CONCERTS[c].to_owned(),
                    artist: "The Reference".to_owned(),
                    venue: "Seoul".to_owned(),
                },
                schedules,
            }
        })
        .collect()
}

/// What every case's draws are seeded by (see [`ModelRandom`]).
pub const DRAW_CASE: u64 = 0x0064_7261_7721;

/// Where a case's store takes token values and ids from: as predictable as the model needs
/// and no more. Token values start with a 16-bit scramble of how many tokens were drawn
/// before (the model counts them), so their byte-wise order (the draw's order of entrants) is
/// known to the model and is *not* the order of issue; the rest is random. Every id starts
/// with the same eight bytes, so the seed of a draw (the first 53 bits of a fresh id) is
/// [`ModelRandom::draw_seed`], known in advance; the rest of an id is random.
#[derive(Debug)]
pub struct ModelRandom {
    /// Token values drawn so far.
    tokens: std::sync::atomic::AtomicU64,
    /// The first bytes of every id.
    prefix: [u8; 8],
    /// The rest.
    rest: domain::random::SeededRandom,
}

impl ModelRandom {
    /// A source whose draws are seeded by `case` and whose other bits come from `seed`.
    #[must_use]
    pub fn new(case: u64, seed: u64) -> Self {
        Self {
            tokens: std::sync::atomic::AtomicU64::new(0),
            prefix: case.to_le_bytes(),
            rest: domain::random::SeededRandom::new(seed),
        }
    }

    /// The seed a draw takes from this source: the service's `seed()` (the first eight bytes of
    /// a fresh id, little-endian, shifted to 53 bits).
    #[must_use]
    pub fn draw_seed(case: u64) -> u64 {
        let id = domain::random::Randomness::uuid(&Self::new(case, 0)).into_bytes();
        let mut first = [0; 8];
        first.copy_from_slice(&id[..8]);
        u64::from_le_bytes(first) >> 11
    }

    /// The leading two bytes of the `k`-th token value drawn (from 0): a bijection of `k`
    /// that is far from monotonic.
    #[must_use]
    pub fn rank(k: u64) -> u16 {
        let k = u16::try_from(k & 0xffff).unwrap_or(0);
        k.wrapping_mul(0x9e37).wrapping_add(0x5bd1).rotate_left(7)
    }
}

impl domain::random::Randomness for ModelRandom {
    fn token(&self) -> TokenValue {
        let k = self.tokens.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        let mut bytes = [0_u8; 32];
        let head = Self::rank(k).to_be_bytes();
        let tail = self.rest.uuid().into_bytes();
        let tail2 = self.rest.uuid().into_bytes();
        bytes[..2].copy_from_slice(&head);
        bytes[2..16].copy_from_slice(&tail[..14]);
        bytes[16..].copy_from_slice(&tail2);
        TokenValue::from_bytes(bytes)
    }

    fn uuid(&self) -> Uuid {
        let mut bytes = self.rest.uuid().into_bytes();
        bytes[..8].copy_from_slice(&self.prefix);
        uuid::Builder::from_random_bytes(bytes).into_uuid()
    }
}
