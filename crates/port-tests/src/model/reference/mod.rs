//! The reference model: the whole service as plain data, and what each step must answer.
//!
//! It restates the contract (`docs/api.md`) and the port contracts directly, in the simplest
//! form that is obviously right, rather than calling the domain's rule functions: a position is
//! *counted* (one plus the WAITING tokens issued before), a seat's claim is *searched*, a
//! balance is a number next to a list of entries. [`Model::apply`] changes the state and
//! returns an [`Expect`]: the exact answer of the use case (an `Ok` value or the exact error
//! variant), with the things only the store can choose (token values, ids) left as indices
//! that the runner binds to what the store returned (see [`crate::model::sut::Bindings`]).
//!
//! Sweeps are exact here because the world is small: every sweep of the world finishes within
//! one tick (see [`crate::model::world::policy`]), so the model needs no notion of which rows
//! a store's batch happened to take.

use std::collections::BTreeMap;

use domain::account::LedgerKind;
use domain::error::{
    AuthorizeError, ChargeError, GetReservationError, HistoryError, PayError, ReadTokenError, ReserveError,
};
use domain::money::Won;
use domain::queue::{AdmissionOutcome, AdmissionPolicy, ExpiredReason, QueueSettings, TokenStatus};
use domain::reservation::ReservationStatus;
use time::{Duration, OffsetDateTime};

use crate::model::op::{
    landing, Bias, Boundary, ClockMove, EntryRef, Op, Patch, ResRef, RoomIx, RoomPatch, SeatRef, TokenRef, User,
};
use crate::model::world::{self, KEYS, ROOMS, SCHEDULES, SEATS, STARTING_CHARGES, USERS};

mod reads;
mod resolve;
mod rooms;
mod steps;

pub use rooms::{RoomModel, RoomTickExpect, RoomTickPart, RoomToken, RoomViewExpect};

/// The balance limit (contract: `BALANCE_LIMIT` above it).
const BALANCE_LIMIT: i64 = 10_000_000_000;
/// The largest single charge (contract: `INVALID_AMOUNT` outside `1..=` it).
const MAX_CHARGE: i64 = 1_000_000_000;
/// The history page when the client names none, and the bounds of one.
const PAGE_DEFAULT: u32 = 50;
const PAGE_MAX: u32 = 100;
/// The poll pace's bounds (seconds).
const POLL_MIN: i64 = 1;
const POLL_MAX: i64 = 20;

/// The waiting room's live settings.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Settings {
    /// Admission paused.
    pub paused: bool,
    /// N.
    pub batch: u32,
    /// M.
    pub interval: Duration,
    /// The ACTIVE TTL.
    pub ttl: Duration,
    /// The cap on ACTIVE tokens.
    pub max_active: Option<u32>,
}

impl Settings {
    /// From the domain's value.
    #[must_use]
    pub fn of(s: QueueSettings) -> Self {
        let a = s.admission;
        Self { paused: s.paused, batch: a.batch, interval: a.interval, ttl: a.active_ttl, max_active: a.max_active }
    }

    /// As the domain's value.
    #[must_use]
    pub fn domain(&self) -> QueueSettings {
        QueueSettings {
            paused: self.paused,
            admission: AdmissionPolicy {
                batch: self.batch,
                interval: self.interval,
                active_ttl: self.ttl,
                max_active: self.max_active,
                abandon_after: None,
            },
        }
    }

    fn patched(self, p: &Patch) -> Self {
        Self {
            paused: p.paused.unwrap_or(self.paused),
            batch: p.batch.unwrap_or(self.batch),
            interval: p.interval_secs.map_or(self.interval, Duration::seconds),
            ttl: p.ttl_secs.map_or(self.ttl, Duration::seconds),
            max_active: p.max_active.unwrap_or(self.max_active),
        }
    }

    /// When the next admission may run: one interval after the last one that admitted
    /// anybody, or now.
    #[must_use]
    pub fn next_admission(&self, last: Option<OffsetDateTime>, now: OffsetDateTime) -> OffsetDateTime {
        match last {
            Some(l) if l + self.interval > now => l + self.interval,
            _ => now,
        }
    }
}

/// A queue token; its index in [`Model::tokens`] is `seq - 1`.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Token {
    /// Whose.
    pub user: User,
    /// As stored.
    pub status: TokenStatus,
    /// Issued.
    pub issued_at: OffsetDateTime,
    /// Admitted.
    pub activated_at: Option<OffsetDateTime>,
    /// TTL end, or the payment's time once used up.
    pub expires_at: Option<OffsetDateTime>,
    /// Why it is stored EXPIRED.
    pub reason: Option<ExpiredReason>,
}

impl Token {
    /// As read at `now`: ACTIVE past its time reads EXPIRED.
    #[must_use]
    pub fn status_at(&self, now: OffsetDateTime) -> TokenStatus {
        match (self.status, self.expires_at) {
            (TokenStatus::Active, Some(e)) if e <= now => TokenStatus::Expired,
            (s, _) => s,
        }
    }

    fn live_active_at(&self, now: OffsetDateTime) -> bool {
        self.status == TokenStatus::Active && self.expires_at.is_some_and(|e| e > now)
    }

    fn lapsed_active_at(&self, now: OffsetDateTime) -> bool {
        self.status == TokenStatus::Active && self.expires_at.is_some_and(|e| e <= now)
    }
}

/// A reservation; its index in [`Model::reservations`] is the order it was made in.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Res {
    /// Holder.
    pub user: User,
    /// Index into [`SEATS`].
    pub seat: usize,
    /// As stored.
    pub status: ReservationStatus,
    /// Made.
    pub created_at: OffsetDateTime,
    /// Lapses.
    pub held_until: OffsetDateTime,
    /// Paid.
    pub paid_at: Option<OffsetDateTime>,
}

impl Res {
    /// As read at `now`: HELD at or past its lapse reads EXPIRED.
    #[must_use]
    pub fn status_at(&self, now: OffsetDateTime) -> ReservationStatus {
        match self.status {
            ReservationStatus::Held if self.held_until <= now => ReservationStatus::Expired,
            s => s,
        }
    }

    /// Stored HELD or PAID: it claims its seat (perhaps a lapsed hold).
    #[must_use]
    pub fn claims(&self) -> bool {
        matches!(self.status, ReservationStatus::Held | ReservationStatus::Paid)
    }

    /// The seat's price.
    #[must_use]
    pub fn price(&self) -> i64 {
        SEATS[self.seat].price
    }
}

/// A ledger entry; entries are kept in the order made, all users together.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Entry {
    /// Whose.
    pub user: User,
    /// Charge or payment.
    pub kind: LedgerKind,
    /// Signed.
    pub amount: i64,
    /// The balance right after.
    pub balance_after: i64,
    /// When.
    pub at: OffsetDateTime,
    /// The payment (index), for a payment.
    pub payment: Option<usize>,
    /// The reservation (index), for a payment.
    pub reservation: Option<usize>,
}

/// A payment.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Payment {
    /// The reservation paid.
    pub reservation: usize,
    /// The payer.
    pub user: User,
    /// The price.
    pub amount: i64,
    /// The balance right after.
    pub balance_after: i64,
    /// When.
    pub paid_at: OffsetDateTime,
    /// The token that paid (`TokenTarget::Token` or `TokenTarget::Room`).
    pub token: TokenTarget,
}

/// Which request a key was used for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Fp {
    /// A charge of `amount` to `user`.
    Charge { user: User, amount: i64 },
    /// A payment of a reservation.
    Pay(Target),
}

/// The response recorded for a key.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Resp {
    /// A charge's: the user and the balance after it.
    Charged { user: User, balance: i64 },
    /// A payment's (index).
    Paid(usize),
}

/// A recorded keyed request.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Record {
    /// The request.
    pub fp: Fp,
    /// Its response.
    pub resp: Resp,
    /// Kept until (exclusive).
    pub expires_at: OffsetDateTime,
}

/// An admission tick that admitted somebody, with the settings it ran under.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Admission {
    /// When.
    pub at: OffsetDateTime,
    /// How many.
    pub admitted: u64,
    /// N then.
    pub batch: u32,
    /// M then.
    pub interval: Duration,
}

/// What a sweep changes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Sweep {
    /// Lapsed ACTIVE tokens.
    Tokens,
    /// Lapsed holds.
    Holds,
    /// Expired idempotency records.
    Keys,
}

impl Sweep {
    /// The sweep a step runs, if it is one.
    #[must_use]
    pub fn of(step: &Step) -> Option<Self> {
        match step {
            Step::ExpireTokens => Some(Self::Tokens),
            Step::ReleaseHolds => Some(Self::Holds),
            Step::PurgeKeys => Some(Self::Keys),
            _ => None,
        }
    }
}

/// One row a sweep changes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Row {
    /// A token (index).
    Token(usize),
    /// A reservation (index).
    Hold(usize),
    /// A record.
    Key(User, usize),
}

/// A token as a client presents it, resolved.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum TokenTarget {
    /// The token with this index (`seq - 1`).
    Token(usize),
    /// A well-formed token nobody was issued.
    Unknown,
    /// Not a token.
    Malformed,
    /// Token `.1` (index in the order issued) of room `.0`.
    Room(RoomIx, usize),
}

impl TokenTarget {
    /// The room a token of this target opens (`None`: `main`).
    #[must_use]
    pub fn room(self) -> Option<RoomIx> {
        match self {
            Self::Room(r, _) => Some(r),
            _ => None,
        }
    }
}

/// Something a client names by id, resolved: an index, or an id nobody has.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Target {
    /// The thing with this index.
    Known(usize),
    /// Nothing.
    Unknown,
}

/// One step, every reference resolved: what the runner executes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Step {
    /// Issue a token.
    Issue(User),
    /// Read a token.
    Poll(TokenTarget),
    /// One admission tick.
    Admit,
    /// The token expiry sweep.
    ExpireTokens,
    /// Authorise, then hold a seat of a schedule.
    Reserve {
        /// The bearer.
        token: TokenTarget,
        schedule: Target,
        seat: Target,
    },
    /// Authorise, then read a reservation.
    GetReservation(TokenTarget, Target),
    /// The hold release sweep.
    ReleaseHolds,
    Pay {
        /// The bearer.
        token: TokenTarget,
        reservation: Target,
        /// The key (index into [`KEYS`]).
        key: Option<usize>,
    },
    Charge {
        user: User,
        /// The amount asked for.
        amount: i64,
        key: Option<usize>,
    },
    /// Read a balance.
    Balance(User),
    /// Read a page of history.
    History {
        user: User,
        /// `before`.
        before: Option<Target>,
        /// `limit`.
        limit: Option<u32>,
    },
    /// Purge expired records.
    PurgeKeys,
    /// Change the waiting room.
    Settings(Patch),
    /// Read the waiting room.
    QueueState,
    /// Set the clock.
    Advance(OffsetDateTime),
    /// Join a room.
    Join(RoomIx, User),
    /// The rooms' scheduler check, by a caller (0 unless threads race: then each thread's
    /// checks are its own, see [`Model::phase`]).
    TickRooms(usize),
    /// Change a room.
    RoomChange(RoomIx, RoomPatch),
    /// Read a room.
    RoomView(RoomIx),
    /// Authorise, then list a concert's schedules.
    Schedules(TokenTarget, usize),
    /// Authorise, then list a schedule's seats.
    Seats(TokenTarget, usize),
}

/// A token as the client sees it, as expected.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct View {
    /// Which token (index in its line's order of issue).
    pub token: usize,
    /// Its room (`None`: `main`).
    pub room: Option<RoomIx>,
    /// Its seq.
    pub seq: i64,
    /// While its order is to be drawn: the opening.
    pub draw_at: Option<OffsetDateTime>,
    /// It, as stored.
    pub stored: Token,
    /// Status as read.
    pub status: TokenStatus,
    /// 1 + WAITING tokens ahead; 0 unless WAITING.
    pub position: i64,
    /// Estimated wait (s).
    pub wait: i64,
    /// Admission paused.
    pub paused: bool,
    /// Poll pace (s).
    pub poll_after: i64,
}

/// A protected call refused by authorisation or by the use case.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Refused<E> {
    /// The token did not authorise.
    Auth(AuthorizeError),
    /// The use case refused.
    Op(E),
}

/// A successful payment, as expected.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Paid {
    /// Made now (index), recorded with the key when there was one.
    Fresh {
        payment: usize,
        /// Whether it was recorded under a key.
        recorded: bool,
    },
    /// A replay of a recorded response.
    Replayed(Resp),
}

/// A successful charge, as expected.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Charged {
    /// Made now: the balance after, and the record made with the key.
    Fresh {
        balance: i64,
        /// The response recorded with the key.
        recorded: Option<Resp>,
    },
    /// A replay of a recorded response.
    Replayed(Resp),
}

/// The waiting room for an operator, as expected.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct QueueView {
    /// WAITING tokens.
    pub waiting: u64,
    /// Live ACTIVE tokens.
    pub active: u64,
    /// Last seq issued.
    pub issued_through: i64,
    /// Last seq admitted.
    pub admitted_through: i64,
    /// The last admission that admitted anybody.
    pub last_admission_at: Option<OffsetDateTime>,
    pub now: OffsetDateTime,
    /// Settings in force.
    pub settings: Settings,
}

/// What a step must answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Expect {
    /// An issued token (new or the user's live one).
    Issue {
        /// The token.
        view: View,
        /// New.
        created: bool,
    },
    /// A token read.
    Poll(Result<View, ReadTokenError>),
    /// An admission tick.
    Admit(AdmissionOutcome),
    /// A sweep's count.
    Count(u64),
    /// A hold: the new reservation (index and state).
    Reserve(Result<(usize, Res), Refused<ReserveError>>),
    /// A reservation read (status as of now).
    GetReservation(Result<(usize, Res), Refused<GetReservationError>>),
    /// A payment.
    Pay(Result<Paid, PayError>),
    Charge(Result<Charged, ChargeError>),
    Balance(i64),
    /// A history page: entries (indices, newest first) and the next page's start.
    History(Result<(Vec<usize>, Option<usize>), HistoryError>),
    /// A settings change's answer.
    Settings(QueueView),
    /// The waiting room.
    QueueState(QueueView),
    /// The clock now.
    Moved(OffsetDateTime),
    /// A join: the token and whether it is new.
    Join(Result<(View, bool), domain::error::IssueTokenError>),
    /// The rooms' check, room by room.
    TickRooms(Vec<RoomTickExpect>),
    /// One part of the rooms' check (see [`Model::phase`]).
    TickRoomsPart(RoomTickPart),
    /// A room change's answer.
    RoomChange(RoomViewExpect),
    /// A room read.
    RoomView(RoomViewExpect),
    /// A concert's schedules (indices into [`SCHEDULES`], soonest first).
    Schedules(Result<Vec<usize>, Refused<domain::error::ListSchedulesError>>),
    /// A schedule's seats (indices into [`SEATS`], by number).
    Seats(Result<Vec<usize>, Refused<domain::error::ListSeatsError>>),
}

impl Expect {
    /// A short name of the outcome's kind (`pay: fresh, keyed`, `reserve: HoldLimit`...), for
    /// the coverage report.
    #[must_use]
    pub fn label(&self) -> String {
        fn err<E: std::fmt::Debug>(e: &E) -> String {
            let s = format!("{e:?}");
            s.split([' ', '(', '{']).next().unwrap_or_default().to_owned()
        }
        fn refused<E: std::fmt::Debug>(r: &Refused<E>) -> String {
            match r {
                Refused::Auth(e) => format!("auth {}", err(e)),
                Refused::Op(e) => err(e),
            }
        }
        match self {
            Self::Issue { created, view } => format!("issue: created {created}, {}", view.status),
            Self::Poll(Ok(v)) => format!("poll: {}", v.status),
            Self::Poll(Err(e)) => format!("poll: {}", err(e)),
            Self::Admit(AdmissionOutcome::Admitted(n)) => format!("admit: admitted {}", n.min(&2)),
            Self::Admit(a) => format!("admit: {}", err(a)),
            Self::Count(n) => format!("sweep: {}", n.min(&2)),
            Self::Reserve(Ok(_)) => "reserve: held".to_owned(),
            Self::Reserve(Err(e)) => format!("reserve: {}", refused(e)),
            Self::GetReservation(Ok((_, r))) => format!("get reservation: {}", r.status),
            Self::GetReservation(Err(e)) => format!("get reservation: {}", refused(e)),
            Self::Pay(Ok(Paid::Fresh { recorded, .. })) => format!("pay: fresh, keyed {recorded}"),
            Self::Pay(Ok(Paid::Replayed(_))) => "pay: replayed".to_owned(),
            Self::Pay(Err(e)) => format!("pay: {}", err(e)),
            Self::Charge(Ok(Charged::Fresh { recorded, .. })) => format!("charge: fresh, keyed {}", recorded.is_some()),
            Self::Charge(Ok(Charged::Replayed(Resp::Paid(_)))) => "charge: replayed a payment (!)".to_owned(),
            Self::Charge(Ok(Charged::Replayed(_))) => "charge: replayed".to_owned(),
            Self::Charge(Err(e)) => format!("charge: {}", err(e)),
            Self::Balance(_) => "balance".to_owned(),
            Self::History(Ok((page, next))) => {
                format!("history: {} entries, more {}", page.len().min(2), next.is_some())
            }
            Self::History(Err(e)) => format!("history: {}", err(e)),
            Self::Settings(q) => format!("settings: paused {}", q.settings.paused),
            Self::QueueState(_) => "queue state".to_owned(),
            Self::Moved(_) => "clock".to_owned(),
            Self::Join(Ok((v, created))) => {
                let pending = if v.draw_at.is_some() { ", drawing" } else { "" };
                format!("join: created {created}, {}{pending}", v.status)
            }
            Self::Join(Err(e)) => format!("join: {}", err(e)),
            Self::TickRooms(ticks) => {
                let rooms: Vec<String> = ticks
                    .iter()
                    .map(|t| {
                        let drew = t.drew.map_or(String::new(), |(_, p)| format!("drew {}, ", p.min(3)));
                        let admission = match t.admission {
                            AdmissionOutcome::Admitted(n) => format!("admitted {}", n.min(2)),
                            AdmissionOutcome::AdmittedPresent { admitted, .. } => {
                                format!("admitted {}, abandoned", admitted.min(2))
                            }
                            a => err(&a),
                        };
                        format!("{} {drew}{admission}", ROOMS[t.room].id)
                    })
                    .collect();
                format!("tick rooms: {}", rooms.join("; "))
            }
            Self::TickRoomsPart(part) => match part {
                RoomTickPart::Drew(r, d) => format!("tick rooms: {} drew {}", ROOMS[*r].id, d.is_some()),
                RoomTickPart::Admission(r, a) => format!("tick rooms: {} admission {}", ROOMS[*r].id, err(a)),
                RoomTickPart::Expired(r, n) => format!("tick rooms: {} expired {}", ROOMS[*r].id, n.min(&2)),
            },
            Self::RoomChange(v) => format!("room change: {:?}", v.state),
            Self::RoomView(v) => format!("room view: {:?}", v.state),
            Self::Schedules(Ok(_)) => "schedules: listed".to_owned(),
            Self::Schedules(Err(e)) => format!("schedules: {}", refused(e)),
            Self::Seats(Ok(_)) => "seats: listed".to_owned(),
            Self::Seats(Err(e)) => format!("seats: {}", refused(e)),
        }
    }
}

/// The whole service's state.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Model {
    /// When the case started (schedules start relative to it).
    pub t0: OffsetDateTime,
    pub now: OffsetDateTime,
    /// Live settings.
    pub settings: Settings,
    /// Tokens by `seq - 1`.
    pub tokens: Vec<Token>,
    /// Admission cursor.
    pub admitted_through: i64,
    /// The last admission that admitted anybody.
    pub last_admission_at: Option<OffsetDateTime>,
    /// Every admission that admitted anybody.
    pub admissions: Vec<Admission>,
    /// Reservations in the order made.
    pub reservations: Vec<Res>,
    pub balances: [i64; USERS],
    /// The ledger, all users, in the order made.
    pub ledger: Vec<Entry>,
    /// Payments in the order made.
    pub payments: Vec<Payment>,
    /// Records by `(user, key)`.
    pub records: BTreeMap<(User, usize), Record>,
    /// The last keyed request (for [`Op::Retry`]).
    pub last_keyed: Option<Step>,
    /// The rooms other than `main`, as [`ROOMS`].
    pub rooms: Vec<RoomModel>,
    /// How many token values the service took from its randomness (see
    /// [`world::ModelRandom`]).
    pub token_calls: u64,
    /// Sights a rooms check took from the service's memory (by caller, see [`Step::TickRooms`])
    /// and has not written to the lines yet.
    pub draining: BTreeMap<usize, Vec<(RoomIx, usize, OffsetDateTime)>>,
    /// What the case's draws are seeded by (see [`world::ModelRandom`]).
    pub draw_case: u64,
    /// The seed every draw of this case takes (see [`world::ModelRandom::draw_seed`]).
    pub draw_seed: u64,
}

impl Model {
    /// The world at set-up (see [`crate::model::world`]): the starting settings, the
    /// catalogue, and the starting balances charged at `t0`.
    #[must_use]
    pub fn new(t0: OffsetDateTime) -> Self {
        Self::with_draw_case(t0, world::DRAW_CASE)
    }

    /// The world at set-up, with the draws of the case seeded by `draw_case`.
    #[must_use]
    pub fn with_draw_case(t0: OffsetDateTime, draw_case: u64) -> Self {
        let mut m = Self {
            t0,
            now: t0,
            settings: Settings::of(world::starting_settings()),
            tokens: Vec::new(),
            admitted_through: 0,
            last_admission_at: None,
            admissions: Vec::new(),
            reservations: Vec::new(),
            balances: [0; USERS],
            ledger: Vec::new(),
            payments: Vec::new(),
            records: BTreeMap::new(),
            last_keyed: None,
            rooms: (0..ROOMS.len()).map(RoomModel::new).collect(),
            token_calls: 0,
            draining: BTreeMap::new(),
            draw_case,
            draw_seed: world::ModelRandom::draw_seed(draw_case),
        };
        for (user, charges) in STARTING_CHARGES.iter().enumerate() {
            for amount in *charges {
                m.apply(&Step::Charge { user, amount: *amount, key: None });
            }
        }
        m
    }

    /// When schedule `i` starts.
    #[must_use]
    pub fn starts_at(&self, i: usize) -> OffsetDateTime {
        self.t0 + SCHEDULES[i]
    }
}

fn count<T>(it: impl Iterator<Item = T>) -> u64 {
    count_n(it.count())
}

fn count_n(n: usize) -> u64 {
    u64::try_from(n).unwrap_or(u64::MAX)
}
