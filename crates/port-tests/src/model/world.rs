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
pub const SEATS: [SeatSpec; 5] = [
    SeatSpec { schedule: 0, number: 1, price: 3_000 },
    SeatSpec { schedule: 0, number: 2, price: 5_000 },
    SeatSpec { schedule: 0, number: 3, price: 8_000 },
    SeatSpec { schedule: 1, number: 1, price: 2_000 },
    SeatSpec { schedule: 1, number: 2, price: 4_000 },
];

/// How long after the start of a case each schedule starts: the first a week later, the
/// second two hours later, so a clock move can reach it (then its seats are `NotFound`).
pub const SCHEDULES: [Duration; 2] = [Duration::days(7), Duration::hours(2)];

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

/// The concert.
#[must_use]
pub fn concert() -> ConcertId {
    ConcertId::from_uuid(id(0x0002, 0))
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

/// The catalogue written at set-up, relative to the case's start `t0`.
#[must_use]
pub fn catalogue(t0: OffsetDateTime) -> NewConcert {
    let schedules = SCHEDULES
        .iter()
        .enumerate()
        .map(|(i, after)| NewSchedule {
            id: schedule(i),
            concert_id: concert(),
            starts_at: t0 + *after,
            seats: (0..SEATS.len()).filter(|&s| SEATS[s].schedule == i).map(seat_value).collect(),
        })
        .collect();
    NewConcert {
        concert: Concert {
            id: concert(),
            title: "Model Symphony".to_owned(),
            artist: "The Reference".to_owned(),
            venue: "Seoul".to_owned(),
        },
        schedules,
    }
}
