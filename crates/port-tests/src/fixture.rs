//! The set-up every case shares: a fresh store, a manual clock that is both the store's and the
//! domain's, the use cases wired to the store's ports, a test catalogue seeded through
//! `CatalogueStore::create_concert`, and helpers to get admitted users without waiting.

use std::fmt;
use std::ops::{Deref, DerefMut};
use std::sync::Arc;

use adapters_local::OsRandom;
use domain::account::{LedgerEntry, LedgerQuery};
use domain::catalogue::{Concert, NewConcert, NewSchedule, Seat, SeatClaim, SeatStatus};
use domain::clock::{Clock, ManualClock};
use domain::error::PayError;
use domain::idempotency::{
    Effect, Fingerprint, IdempotencyGuard, IdempotencyKey, IdempotencyRequest, Outcome, StoredResponse,
};
use domain::ids::{ConcertId, ReservationId, ScheduleId, SeatId, UserId};
use domain::money::Won;
use domain::payment::Payment;
use domain::queue::{AdmissionOutcome, QueueToken, SettingsChange, SettingsPatch, TokenStatus};
use domain::random::Randomness;
use domain::reservation::Reservation;
use domain::service::{ActiveUser, Policy, Ports, Ticketing};
use time::{Duration, OffsetDateTime};

use crate::Harness;

/// Seats per schedule of the test catalogue, numbered 1 to 50.
pub const SEATS: u32 = 50;

/// The admission settings a case runs with unless it says otherwise: the contract's defaults
/// (N = 100 every 60 s, ACTIVE for 600 s, no cap, not paused), written to the store so a case
/// never depends on the starting values a harness chose.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Admission {
    /// N.
    pub batch: u32,
    /// M, in seconds.
    pub interval_secs: i64,
    /// The ACTIVE TTL, in seconds.
    pub ttl_secs: i64,
    /// The cap on ACTIVE tokens.
    pub max_active: Option<u32>,
}

impl Default for Admission {
    fn default() -> Self {
        Self { batch: 100, interval_secs: 60, ttl_secs: 600, max_active: None }
    }
}

impl Admission {
    /// `batch` per tick, every 60 s, ACTIVE for 600 s, capped at `max_active`.
    #[must_use]
    pub fn batch(batch: u32, max_active: Option<u32>) -> Self {
        Self { batch, max_active, ..Self::default() }
    }

    /// The patch that sets every one of these (and un-pauses).
    #[must_use]
    pub fn patch(&self) -> SettingsPatch {
        SettingsPatch::new(SettingsChange {
            paused: Some(false),
            admit_batch: Some(i64::from(self.batch)),
            admit_interval_secs: Some(self.interval_secs),
            active_ttl_secs: Some(self.ttl_secs),
            max_active: Some(self.max_active.map(i64::from)),
        })
        .expect("the suite's admission settings are within the contract's bounds")
    }
}

/// One schedule of the test catalogue.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TestSchedule {
    /// Its id.
    pub id: ScheduleId,
    /// Its concert.
    pub concert_id: ConcertId,
    /// When it starts.
    pub starts_at: OffsetDateTime,
    /// Its seats, by number.
    pub seats: Vec<Seat>,
}

/// What a case's store was seeded with.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Catalogue {
    /// The concerts, in the order created (not by title).
    pub concerts: Vec<Concert>,
    /// Their schedules: 0-2 belong to concert 0, 3-5 to concert 1, each concert's soonest
    /// first.
    pub schedules: Vec<TestSchedule>,
}

/// Days ahead of the clock at which each concert's three schedules start.
const DAYS_AHEAD: [i64; 3] = [7, 14, 30];

/// Builds a concert with three schedules of 50 seats, relative to `now`, ids from `random`.
/// Prices differ per seat (`base + 1,000 × number`) so sums catch a wrong seat.
#[must_use]
pub fn new_concert(random: &dyn Randomness, title: &str, base_price: i64, now: OffsetDateTime) -> NewConcert {
    let id = ConcertId::from_uuid(random.uuid());
    let schedules =
        DAYS_AHEAD.iter().map(|days| new_schedule(random, id, now + Duration::days(*days), base_price)).collect();
    NewConcert {
        concert: Concert { id, title: title.to_owned(), artist: format!("{title} artist"), venue: "Seoul".to_owned() },
        schedules,
    }
}

/// A schedule of `concert` starting at `starts_at` with seats 1..=50 priced `base + 1,000 × n`.
#[must_use]
pub fn new_schedule(random: &dyn Randomness, concert: ConcertId, starts_at: OffsetDateTime, base: i64) -> NewSchedule {
    let id = ScheduleId::from_uuid(random.uuid());
    let seats = (1..=SEATS)
        .map(|number| Seat {
            id: SeatId::from_uuid(random.uuid()),
            schedule_id: id,
            number,
            price: Won::new(base + 1_000 * i64::from(number)),
        })
        .collect();
    NewSchedule { id, concert_id: concert, starts_at, seats }
}

/// The response the suite records for a keyed request: status and a body naming the effect, so
/// a replay can be compared byte for byte.
#[must_use]
pub fn render(effect: &Effect) -> StoredResponse {
    match effect {
        Effect::Charged { user, balance } => {
            StoredResponse { status: 200, body: format!("{{\"userId\":\"{user}\",\"balance\":{}}}", balance.get()) }
        }
        Effect::Paid(p) => StoredResponse {
            status: 201,
            body: format!(
                "{{\"id\":\"{}\",\"amount\":{},\"balance\":{}}}",
                p.id,
                p.amount.get(),
                p.balance_after.get()
            ),
        },
    }
}

/// What a store is handed to claim `key` for `user` at the port, made `now`, kept for `ttl` and
/// recorded with the suite's [`render`].
#[must_use]
pub fn guard<'a>(
    user: UserId,
    key: &'a IdempotencyKey,
    fingerprint: &'a Fingerprint,
    now: OffsetDateTime,
    ttl: Duration,
) -> IdempotencyGuard<'a> {
    IdempotencyGuard { user, key, fingerprint, now, expires_at: now + ttl, render: &render }
}

/// A keyed request with the suite's [`render`].
#[must_use]
pub fn keyed(key: &str) -> IdempotencyRequest<'static> {
    IdempotencyRequest { key: IdempotencyKey::parse(key).expect("a valid key"), render: &render }
}

/// One case's world: everything but the harness, so that racing threads can share it whatever
/// the harness is.
pub struct World {
    /// The clock every port reads, the store's included.
    pub clock: ManualClock,
    /// The store's ports, with the fixture's clock and the OS's randomness.
    pub ports: Ports,
    /// The use cases wired to them.
    pub app: Ticketing,
    /// The catalogue seeded (empty unless the case asked for one).
    pub catalogue: Catalogue,
}

impl fmt::Debug for World {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("World").field("clock", &self.clock).finish_non_exhaustive()
    }
}

/// One case: the store under test and its [`World`] (which the fixture derefs to).
pub struct Fixture<H> {
    /// The store under test.
    pub harness: H,
    /// Everything else.
    pub world: World,
}

impl<H> fmt::Debug for Fixture<H> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Fixture").field("world", &self.world).finish_non_exhaustive()
    }
}

impl<H> Deref for Fixture<H> {
    type Target = World;

    fn deref(&self) -> &World {
        &self.world
    }
}

impl<H> DerefMut for Fixture<H> {
    fn deref_mut(&mut self) -> &mut World {
        &mut self.world
    }
}

impl<H: Harness> Fixture<H> {
    /// A fresh store as the harness made it: nothing written, settings at its starting values.
    #[must_use]
    pub fn bare() -> Self {
        let clock = ManualClock::at_epoch();
        let harness = H::new_store(clock.clone());
        let ports = Ports { clock: Arc::new(clock.clone()), random: Arc::new(OsRandom), ..harness.ports() };
        let app = Ticketing::new(ports.clone(), Policy::default());
        Self { harness, world: World { clock, ports, app, catalogue: Catalogue::default() } }
    }

    /// A fresh, empty store (no catalogue) admitting as `admission` says.
    #[must_use]
    pub fn empty(admission: Admission) -> Self {
        let fx = Self::bare();
        fx.set_admission(admission);
        fx
    }

    /// A fresh store with the test catalogue (2 concerts × 3 schedules × 50 seats), admitting
    /// with the defaults.
    #[must_use]
    pub fn seeded() -> Self {
        let mut fx = Self::empty(Admission::default());
        fx.world.seed();
        fx
    }
}

impl World {
    /// Writes the test catalogue through `create_concert`.
    pub fn seed(&mut self) {
        let now = self.now();
        let random = self.ports.random.clone();
        // Created in the order that is *not* by title, so listings must sort.
        let specs = [("Winter Symphony", 100_000), ("Stadium Tour", 50_000)];
        for (title, base) in specs {
            let concert = new_concert(random.as_ref(), title, base, now);
            assert!(self.ports.catalogue.create_concert(&concert, None).expect("create_concert"), "a new concert id");
            self.catalogue.concerts.push(concert.concert.clone());
            self.catalogue.schedules.extend(concert.schedules.into_iter().map(|s| TestSchedule {
                id: s.id,
                concert_id: s.concert_id,
                starts_at: s.starts_at,
                seats: s.seats,
            }));
        }
    }

    /// Sets the waiting room's admission settings (and un-pauses).
    pub fn set_admission(&self, admission: Admission) {
        self.ports.settings.update(&admission.patch(), None).expect("settings update");
    }

    /// The use cases under another static policy (hold time, hold limit, key TTL, sweeps).
    pub fn set_policy(&mut self, policy: Policy) {
        self.app = Ticketing::new(self.ports.clone(), policy);
    }

    /// Now, as the ports see it.
    #[must_use]
    pub fn now(&self) -> OffsetDateTime {
        self.clock.now()
    }

    /// Moves the clock.
    pub fn advance(&self, by: Duration) {
        self.clock.advance(by);
    }

    /// A new user id.
    #[must_use]
    pub fn user(&self) -> UserId {
        UserId::from_uuid(self.ports.random.uuid())
    }

    /// The `i`-th schedule (0-2 belong to concert 0, 3-5 to concert 1, soonest first).
    #[must_use]
    pub fn schedule(&self, i: usize) -> &TestSchedule {
        &self.catalogue.schedules[i]
    }

    /// Concert `i` (0 or 1) as created.
    #[must_use]
    pub fn concert(&self, i: usize) -> &Concert {
        &self.catalogue.concerts[i]
    }

    /// Seat number `number` (1-based) of the `i`-th schedule.
    #[must_use]
    pub fn seat(&self, i: usize, number: u32) -> &Seat {
        self.schedule(i).seats.iter().find(|s| s.number == number).expect("seat numbers are 1..=50")
    }

    /// Issues a token for `user` and returns it as stored.
    #[must_use]
    pub fn issue(&self, user: UserId) -> QueueToken {
        self.app.issue_token(user).expect("issue").view.token
    }

    /// Runs admission ticks, moving the clock to each next due tick, until none of `tokens`
    /// is WAITING.
    pub fn admit_all(&self, tokens: &[QueueToken]) {
        loop {
            let waiting = tokens
                .iter()
                .filter(|t| {
                    self.ports.queue.find(&t.value).expect("find").expect("stored").status == TokenStatus::Waiting
                })
                .count();
            if waiting == 0 {
                return;
            }
            match self.app.admit().expect("admit") {
                AdmissionOutcome::NotDue { wait } => self.advance(wait),
                AdmissionOutcome::Admitted(_) | AdmissionOutcome::AdmittedPresent { .. } | AdmissionOutcome::Busy => {}
                AdmissionOutcome::Paused => panic!("admission is paused"),
            }
        }
    }

    /// `n` new users, each issued a token and admitted (moving the clock to the next due
    /// admission tick when needed), authorised.
    #[must_use]
    pub fn active_users(&self, n: usize) -> Vec<ActiveUser> {
        let tokens: Vec<QueueToken> = (0..n)
            .map(|_| {
                let issued = self.app.issue_token(self.user()).expect("issue");
                assert!(issued.created);
                issued.view.token
            })
            .collect();
        self.admit_all(&tokens);
        tokens.iter().map(|t| self.app.authorize(t.value.as_str()).expect("an admitted token authorises")).collect()
    }

    /// One new admitted user.
    #[must_use]
    pub fn active_user(&self) -> ActiveUser {
        self.active_users(1).pop().expect("one user")
    }

    /// A new ACTIVE token for a user whose last token paid (or lapsed).
    #[must_use]
    pub fn readmit(&self, user: UserId) -> ActiveUser {
        let issued = self.app.issue_token(user).expect("issue");
        assert!(issued.created, "the user had no live token");
        self.admit_all(std::slice::from_ref(&issued.view.token));
        self.app.authorize(issued.view.token.value.as_str()).expect("an admitted token authorises")
    }

    /// Charges `amount` to `user`, unkeyed.
    pub fn charge(&self, user: UserId, amount: i64) -> Won {
        match self.app.charge(user, amount, None).expect("charge") {
            Outcome::Fresh { value, .. } => value,
            Outcome::Replayed(r) => panic!("an unkeyed charge replayed {r:?}"),
        }
    }

    /// Pays `reservation` with `who`'s token, unkeyed.
    ///
    /// # Errors
    /// What the use case returns.
    pub fn pay(&self, who: &ActiveUser, reservation: ReservationId) -> Result<Payment, PayError> {
        match self.app.pay(who.token().value.as_str(), reservation, None)? {
            Outcome::Fresh { value, .. } => Ok(value),
            Outcome::Replayed(r) => panic!("an unkeyed payment replayed {r:?}"),
        }
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

    /// The token as stored.
    #[must_use]
    pub fn token(&self, t: &QueueToken) -> QueueToken {
        self.ports.queue.find(&t.value).expect("find").expect("stored")
    }

    /// The user's whole ledger, newest first.
    #[must_use]
    pub fn ledger(&self, user: UserId) -> Vec<LedgerEntry> {
        let query = LedgerQuery { before: None, limit: 10_000 };
        self.ports.accounts.ledger(user, &query).expect("ledger").expect("no `before`: always a list")
    }

    /// Everything a payment could change, to compare before and after a refused one.
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
            ledger: self.ledger(who.user_id()),
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
    /// The payer's ledger.
    pub ledger: Vec<LedgerEntry>,
    /// The reservation as stored.
    pub reservation: Option<Reservation>,
    /// The payer's token as stored.
    pub token: Option<QueueToken>,
    /// The claims on the reservation's schedule's seats.
    pub seats: Vec<(u32, Option<SeatClaim>)>,
}
