//! The set-up every case shares: a fresh store, a manual clock, the use cases wired to the
//! store's ports, and helpers to get admitted users without waiting.

use std::fmt;

use domain::catalogue::{Seat, SeatStatus};
use domain::clock::{Clock, ManualClock};
use domain::demo::{self, DemoCatalogue, DemoSchedule};
use domain::ids::{ReservationId, UserId};
use domain::money::Won;
use domain::queue::{AdmissionOutcome, AdmissionPolicy, TokenStatus};
use domain::reservation::Reservation;
use domain::service::{ActiveUser, Policy, Ports, Ticketing};
use time::{Duration, OffsetDateTime};

use crate::Harness;

/// The policy the suite runs with unless a case says otherwise: the contract's defaults
/// (N = 100 every 60 s, ACTIVE for 600 s, holds of 300 s).
#[must_use]
pub fn policy() -> Policy {
    Policy::default()
}

/// A policy admitting `batch` per tick, optionally capped at `max_active` ACTIVE tokens.
#[must_use]
pub fn policy_with(batch: u32, max_active: Option<u32>) -> Policy {
    let base = Policy::default();
    Policy { admission: AdmissionPolicy { batch, max_active, ..base.admission }, ..base }
}

/// One case's world.
pub struct Fixture<H> {
    /// The store under test.
    pub harness: H,
    /// The clock every port reads.
    pub clock: ManualClock,
    /// The store's ports.
    pub ports: Ports,
    /// The use cases wired to them.
    pub app: Ticketing,
    /// The catalogue seeded (empty when the case did not ask for one).
    pub demo: DemoCatalogue,
}

impl<H> fmt::Debug for Fixture<H> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Fixture").field("clock", &self.clock).finish_non_exhaustive()
    }
}

impl<H: Harness> Fixture<H> {
    /// A fresh, empty store (no catalogue) under `policy`.
    #[must_use]
    pub fn empty(policy: Policy) -> Self {
        let clock = ManualClock::at_epoch();
        let harness = H::new_store(clock.clone());
        let ports = harness.ports();
        let app = Ticketing::new(ports.clone(), policy);
        Self { harness, clock, ports, app, demo: DemoCatalogue { concerts: Vec::new(), schedules: Vec::new() } }
    }

    /// A fresh store holding the demo catalogue, under the default policy.
    #[must_use]
    pub fn seeded() -> Self {
        let mut fx = Self::empty(policy());
        fx.demo = demo::catalogue(fx.clock.now());
        fx.harness.seed(&fx.demo);
        fx
    }
}

impl<H> Fixture<H> {
    /// Now, as the ports see it.
    #[must_use]
    pub fn now(&self) -> OffsetDateTime {
        self.clock.now()
    }

    /// Moves the clock.
    pub fn advance(&self, by: Duration) {
        self.clock.advance(by);
    }

    /// The `i`-th demo schedule (0-2 belong to the first concert, soonest first).
    #[must_use]
    pub fn schedule(&self, i: usize) -> &DemoSchedule {
        &self.demo.schedules[i]
    }

    /// Seat number `number` (1-based) of the `i`-th demo schedule.
    #[must_use]
    pub fn seat(&self, i: usize, number: u32) -> &Seat {
        let schedule = self.schedule(i);
        schedule.seats.iter().find(|s| s.number == number).expect("demo seat numbers are 1..=50")
    }

    /// `n` new users, each issued a token and admitted (moving the clock to the next due
    /// admission tick when needed), authorised.
    #[must_use]
    pub fn active_users(&self, n: usize) -> Vec<ActiveUser> {
        let tokens: Vec<String> = (0..n)
            .map(|_| {
                let issued = self.app.issue_token(UserId::random()).expect("issue");
                assert!(issued.created);
                issued.view.token.value.as_str().to_owned()
            })
            .collect();
        loop {
            let waiting =
                tokens.iter().filter(|t| self.app.read_token(t).expect("read").status == TokenStatus::Waiting).count();
            if waiting == 0 {
                break;
            }
            match self.app.admit().expect("admit") {
                AdmissionOutcome::NotDue { next_at } => self.clock.set(next_at),
                AdmissionOutcome::Admitted(_) | AdmissionOutcome::Busy => {}
            }
        }
        tokens.iter().map(|t| self.app.authorize(t).expect("admitted token authorises")).collect()
    }

    /// One new admitted user.
    #[must_use]
    pub fn active_user(&self) -> ActiveUser {
        self.active_users(1).pop().expect("one user")
    }

    /// Charges `amount` to `user`.
    pub fn charge(&self, user: UserId, amount: i64) -> Won {
        self.app.charge(user, amount).expect("charge")
    }

    /// Holds seat `number` of schedule `i` for `who`.
    #[must_use]
    pub fn hold(&self, who: &ActiveUser, i: usize, number: u32) -> Reservation {
        let seat = self.seat(i, number).id;
        self.app.reserve(who, self.schedule(i).id, seat).expect("reserve")
    }

    /// The status now of seat `number` of schedule `i`, as the seat map shows it.
    #[must_use]
    pub fn seat_status(&self, who: &ActiveUser, i: usize, number: u32) -> SeatStatus {
        let seats = self.app.seats(who, self.schedule(i).id).expect("seats");
        seats.iter().find(|s| s.seat.number == number).expect("seat listed").status
    }

    /// The reservation as stored.
    #[must_use]
    pub fn stored(&self, id: ReservationId) -> Reservation {
        self.ports.reservations.find(id).expect("find").expect("stored")
    }

    /// Everything a payment could change, to compare before and after a failed one.
    #[must_use]
    pub fn snapshot(&self, who: &ActiveUser, reservation: ReservationId) -> Snapshot {
        let r = self.ports.reservations.find(reservation).expect("find");
        let seats = r
            .as_ref()
            .map(|r| {
                let list = self.ports.catalogue.seats(r.schedule_id).expect("seats").expect("schedule");
                list.into_iter().map(|s| (s.seat.number, s.claim)).collect()
            })
            .unwrap_or_default();
        Snapshot {
            balance: self.ports.accounts.balance(who.user_id()).expect("balance"),
            ledger_len: self.ports.accounts.ledger(who.user_id()).expect("ledger").len(),
            reservation: r,
            token: self.ports.queue.find(&who.token().value).expect("find token"),
            seats,
        }
    }
}

/// What a payment could change.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Snapshot {
    /// The payer's balance.
    pub balance: Won,
    /// The length of the payer's ledger.
    pub ledger_len: usize,
    /// The reservation as stored.
    pub reservation: Option<Reservation>,
    /// The payer's token as stored.
    pub token: Option<domain::queue::QueueToken>,
    /// The claims on the reservation's schedule's seats.
    pub seats: Vec<(u32, Option<domain::catalogue::SeatClaim>)>,
}
