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
use domain::queue::{AdmissionOutcome, AdmissionPolicy, QueueSettings, TokenStatus};
use domain::reservation::ReservationStatus;
use time::{Duration, OffsetDateTime};

use crate::model::op::{landing, Boundary, ClockMove, EntryRef, Op, Patch, ResRef, SeatRef, TokenRef, User};
use crate::model::world::{self, KEYS, SCHEDULES, SEATS, STARTING_CHARGES, USERS};

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
    /// The token that paid (index).
    pub token: usize,
}

/// Which request a key was used for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Fp {
    /// A charge of `amount` to `user`.
    Charge {
        /// The user.
        user: User,
        /// The amount.
        amount: i64,
    },
    /// A payment of a reservation.
    Pay(Target),
}

/// The response recorded for a key.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Resp {
    /// A charge's: the user and the balance after it.
    Charged {
        /// The user.
        user: User,
        /// The balance.
        balance: i64,
    },
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
        /// The schedule.
        schedule: Target,
        /// The seat.
        seat: Target,
    },
    /// Authorise, then read a reservation.
    GetReservation(TokenTarget, Target),
    /// The hold release sweep.
    ReleaseHolds,
    /// Pay.
    Pay {
        /// The bearer.
        token: TokenTarget,
        /// The reservation.
        reservation: Target,
        /// The key (index into [`KEYS`]).
        key: Option<usize>,
    },
    /// Charge.
    Charge {
        /// The user.
        user: User,
        /// The amount asked for.
        amount: i64,
        /// The key.
        key: Option<usize>,
    },
    /// Read a balance.
    Balance(User),
    /// Read a page of history.
    History {
        /// The user.
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
}

/// A token as the client sees it, as expected.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct View {
    /// Which token.
    pub token: usize,
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
        /// The payment.
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
        /// The balance.
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
    /// Now.
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
    /// A charge.
    Charge(Result<Charged, ChargeError>),
    /// A balance.
    Balance(i64),
    /// A history page: entries (indices, newest first) and the next page's start.
    History(Result<(Vec<usize>, Option<usize>), HistoryError>),
    /// A settings change's answer.
    Settings(QueueView),
    /// The waiting room.
    QueueState(QueueView),
    /// The clock now.
    Moved(OffsetDateTime),
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
        }
    }
}

/// The whole service's state.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Model {
    /// When the case started (schedules start relative to it).
    pub t0: OffsetDateTime,
    /// Now.
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
    /// Balances.
    pub balances: [i64; USERS],
    /// The ledger, all users, in the order made.
    pub ledger: Vec<Entry>,
    /// Payments in the order made.
    pub payments: Vec<Payment>,
    /// Records by `(user, key)`.
    pub records: BTreeMap<(User, usize), Record>,
    /// The last keyed request (for [`Op::Retry`]).
    pub last_keyed: Option<Step>,
}

impl Model {
    /// The world at set-up (see [`crate::model::world`]): the starting settings, the
    /// catalogue, and the starting balances charged at `t0`.
    #[must_use]
    pub fn new(t0: OffsetDateTime) -> Self {
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

    // ---- resolving references --------------------------------------------------------------

    fn tokens_of(&self, user: User) -> impl DoubleEndedIterator<Item = usize> + '_ {
        (0..self.tokens.len()).filter(move |&i| self.tokens[i].user == user)
    }

    fn token_target(&self, r: TokenRef) -> TokenTarget {
        let found = match r {
            TokenRef::Latest(u) => self.tokens_of(u).next_back(),
            TokenRef::Previous(u) => self.tokens_of(u).rev().nth(1),
            TokenRef::Unknown => None,
            TokenRef::Malformed => return TokenTarget::Malformed,
        };
        found.map_or(TokenTarget::Unknown, TokenTarget::Token)
    }

    fn res_target(&self, r: ResRef) -> Target {
        let found = match r {
            ResRef::LatestOf(u) => (0..self.reservations.len()).rev().find(|&i| self.reservations[i].user == u),
            ResRef::Recent(k) => self.reservations.len().checked_sub(k + 1),
            ResRef::Unknown => None,
        };
        found.map_or(Target::Unknown, Target::Known)
    }

    fn entries_of(&self, user: User) -> Vec<usize> {
        (0..self.ledger.len()).filter(|&i| self.ledger[i].user == user).collect()
    }

    fn entry_target(&self, user: User, r: EntryRef) -> Target {
        let found = match r {
            EntryRef::Own(k) => self.entries_of(user).into_iter().rev().nth(k),
            EntryRef::Other => self.entries_of((user + 1) % USERS).last().copied(),
            EntryRef::Unknown => None,
        };
        found.map_or(Target::Unknown, Target::Known)
    }

    fn boundary(&self, b: Boundary) -> Option<OffsetDateTime> {
        let now = self.now;
        match b {
            Boundary::NextAdmission => self.last_admission_at.map(|l| l + self.settings.interval),
            Boundary::TokenExpiry => {
                self.tokens.iter().filter(|t| t.live_active_at(now)).filter_map(|t| t.expires_at).min()
            }
            Boundary::HoldLapse => self
                .reservations
                .iter()
                .filter(|r| r.status == ReservationStatus::Held && r.held_until > now)
                .map(|r| r.held_until)
                .min(),
            Boundary::KeyExpiry => self.records.values().map(|r| r.expires_at).filter(|e| *e > now).min(),
            Boundary::ScheduleStart => (0..SCHEDULES.len()).map(|i| self.starts_at(i)).filter(|s| *s > now).min(),
        }
    }

    /// The concrete step an op means in this state.
    #[must_use]
    pub fn resolve(&self, op: &Op) -> Step {
        match *op {
            Op::Issue(u) => Step::Issue(u),
            Op::Poll(t) => Step::Poll(self.token_target(t)),
            Op::Admit => Step::Admit,
            Op::ExpireTokens => Step::ExpireTokens,
            Op::Reserve(t, seat) => {
                let token = self.token_target(t);
                let (schedule, seat) = match seat {
                    SeatRef::Seat(s) => (Target::Known(SEATS[s].schedule), Target::Known(s)),
                    SeatRef::Mismatched(s) => (Target::Known(1 - SEATS[s].schedule), Target::Known(s)),
                    SeatRef::UnknownSeat(sch) => (Target::Known(sch), Target::Unknown),
                    SeatRef::UnknownSchedule(s) => (Target::Unknown, Target::Known(s)),
                };
                Step::Reserve { token, schedule, seat }
            }
            Op::GetReservation(t, r) => Step::GetReservation(self.token_target(t), self.res_target(r)),
            Op::ReleaseHolds => Step::ReleaseHolds,
            Op::Pay(t, r, key) => Step::Pay { token: self.token_target(t), reservation: self.res_target(r), key },
            Op::Charge(user, amount, key) => Step::Charge { user, amount, key },
            Op::Retry(same) => match (self.last_keyed, same) {
                (Some(step), true) => step,
                (Some(Step::Charge { user, amount, key }), false) => Step::Charge { user, amount: amount + 1, key },
                (Some(Step::Pay { token, reservation, key }), false) => {
                    let n = self.reservations.len();
                    let other = match reservation {
                        Target::Known(r) if n > 1 => Target::Known((r + 1) % n),
                        Target::Known(_) => Target::Unknown,
                        Target::Unknown if n > 0 => Target::Known(n - 1),
                        Target::Unknown => Target::Unknown,
                    };
                    Step::Pay { token, reservation: other, key }
                }
                _ => Step::Balance(0),
            },
            Op::Balance(u) => Step::Balance(u),
            Op::History(user, before, limit) => {
                Step::History { user, before: before.map(|b| self.entry_target(user, b)), limit }
            }
            Op::PurgeKeys => Step::PurgeKeys,
            Op::Settings(p) => Step::Settings(p),
            Op::QueueState => Step::QueueState,
            Op::Advance(ClockMove::By(d)) => Step::Advance(self.now + d),
            Op::Advance(ClockMove::To(b, offset)) => Step::Advance(landing(self.now, self.boundary(b), offset)),
        }
    }

    // ---- reads -------------------------------------------------------------------------------

    /// Token `i` as its holder reads it now.
    #[must_use]
    pub fn view(&self, i: usize) -> View {
        let t = &self.tokens[i];
        let status = t.status_at(self.now);
        let waiting = status == TokenStatus::Waiting;
        let position = if waiting {
            let ahead = self.tokens[..i].iter().filter(|o| o.status == TokenStatus::Waiting).count();
            i64::try_from(ahead).unwrap_or(i64::MAX) + 1
        } else {
            0
        };
        let s = &self.settings;
        let wait = if position > 0 {
            let next = s.next_admission(self.last_admission_at, self.now);
            let ticks_ahead = (position - 1) / i64::from(s.batch.max(1));
            let wait = (next - self.now) + s.interval * i32::try_from(ticks_ahead).unwrap_or(i32::MAX);
            let whole = wait.whole_seconds();
            if wait > Duration::seconds(whole) {
                whole + 1
            } else {
                whole
            }
        } else {
            0
        };
        let poll_after = match (waiting, s.paused) {
            (false, _) => 0,
            (true, true) => POLL_MAX,
            (true, false) => (wait / 4).clamp(POLL_MIN, POLL_MAX),
        };
        View { token: i, stored: t.clone(), status, position, wait, paused: s.paused, poll_after }
    }

    /// The waiting room for an operator now.
    #[must_use]
    pub fn queue_view(&self) -> QueueView {
        let now = self.now;
        QueueView {
            waiting: count(self.tokens.iter().filter(|t| t.status == TokenStatus::Waiting)),
            active: count(self.tokens.iter().filter(|t| t.live_active_at(now))),
            issued_through: i64::try_from(self.tokens.len()).unwrap_or(i64::MAX),
            admitted_through: self.admitted_through,
            last_admission_at: self.last_admission_at,
            now,
            settings: self.settings,
        }
    }

    /// Whether the user has a live hold now.
    #[must_use]
    pub fn holds_live(&self, u: User) -> bool {
        self.reservations.iter().any(|r| r.user == u && r.status_at(self.now) == ReservationStatus::Held)
    }

    /// Users whose latest token is ACTIVE now.
    #[must_use]
    pub fn active_users(&self) -> Vec<User> {
        (0..USERS)
            .filter(|&u| self.tokens_of(u).next_back().is_some_and(|t| self.tokens[t].live_active_at(self.now)))
            .collect()
    }

    /// Users without a live token.
    #[must_use]
    pub fn idle_users(&self) -> Vec<User> {
        (0..USERS)
            .filter(|&u| self.tokens_of(u).all(|t| self.tokens[t].status_at(self.now) == TokenStatus::Expired))
            .collect()
    }

    /// WAITING tokens.
    #[must_use]
    pub fn waiting(&self) -> u64 {
        count(self.tokens.iter().filter(|t| t.status == TokenStatus::Waiting))
    }

    /// The reservation claiming seat `s` (stored HELD or PAID), if any.
    #[must_use]
    pub fn claim(&self, s: usize) -> Option<usize> {
        (0..self.reservations.len()).find(|&r| self.reservations[r].seat == s && self.reservations[r].claims())
    }

    fn authorize(&self, t: TokenTarget) -> Result<User, AuthorizeError> {
        let TokenTarget::Token(i) = t else { return Err(AuthorizeError::Invalid) };
        let token = &self.tokens[i];
        match token.status_at(self.now) {
            TokenStatus::Active => Ok(token.user),
            TokenStatus::Waiting => Err(AuthorizeError::NotActive),
            TokenStatus::Expired => Err(AuthorizeError::Expired),
        }
    }

    fn record(&self, user: User, key: usize) -> Option<&Record> {
        self.records.get(&(user, key)).filter(|r| r.expires_at > self.now)
    }

    // ---- steps -------------------------------------------------------------------------------

    /// Runs a step on the model; returns what the service must answer.
    pub fn apply(&mut self, step: &Step) -> Expect {
        let mut answer = None;
        for phase in 0.. {
            let (decided, more) = self.phase(step, phase, false);
            answer = decided.or(answer);
            if !more {
                break;
            }
        }
        answer.expect("every step decides its answer in one of its phases")
    }

    /// How many atomic phases a step may have (see [`Model::phase`]).
    pub const MAX_PHASES: usize = 3;

    /// Runs one atomic phase of a step: its answer if this phase decides it, and whether more
    /// phases follow.
    ///
    /// A use case that makes several store calls is not one atomic action, and racing callers
    /// can tell: a protected call authorises with one read of the token and acts with a later
    /// call (phase 0: authorise; phase 1: act), and a payment reads the token and the key's
    /// record before its unit of work (phase 0: the gate; phase 1: the unit of work). When the
    /// queue lives apart from the payment store (`queue_apart`: Redis), the paying token is
    /// used up by a call of its own after the payment committed (phase 2). Run in one go, the
    /// phases are the use case.
    pub fn phase(&mut self, step: &Step, phase: usize, queue_apart: bool) -> (Option<Expect>, bool) {
        let done = |e: Expect| (Some(e), false);
        match (*step, phase) {
            (Step::Reserve { token, .. }, 0) => match self.authorize(token) {
                Err(e) => done(Expect::Reserve(Err(Refused::Auth(e)))),
                Ok(_) => (None, true),
            },
            (Step::Reserve { token: TokenTarget::Token(t), schedule, seat }, 1) => {
                let u = self.tokens[t].user;
                done(Expect::Reserve(
                    self.reserve(u, schedule, seat).map(|r| (r, self.reservations[r].clone())).map_err(Refused::Op),
                ))
            }
            (Step::GetReservation(token, _), 0) => match self.authorize(token) {
                Err(e) => done(Expect::GetReservation(Err(Refused::Auth(e)))),
                Ok(_) => (None, true),
            },
            (Step::GetReservation(TokenTarget::Token(t), target), 1) => {
                let u = self.tokens[t].user;
                done(Expect::GetReservation(match target {
                    Target::Known(r) if self.reservations[r].user == u => {
                        let mut res = self.reservations[r].clone();
                        res.status = res.status_at(self.now);
                        Ok((r, res))
                    }
                    _ => Err(Refused::Op(GetReservationError::NotFound)),
                }))
            }
            (Step::Pay { token, reservation, key }, 0) => {
                if key.is_some() {
                    self.last_keyed = Some(*step);
                }
                match self.pay_gate(token, reservation, key) {
                    Err(answer) => done(Expect::Pay(answer)),
                    Ok(()) => (None, true),
                }
            }
            (Step::Pay { token: TokenTarget::Token(t), reservation, key }, 1) => {
                let answer = self.pay(t, reservation, key, !queue_apart);
                let fresh = matches!(answer, Ok(Paid::Fresh { .. }));
                (Some(Expect::Pay(answer)), queue_apart && fresh)
            }
            (Step::Pay { token: TokenTarget::Token(t), .. }, 2) => {
                let used = &mut self.tokens[t];
                if used.status == TokenStatus::Active {
                    used.status = TokenStatus::Expired;
                    used.expires_at = self.payments.iter().find(|p| p.token == t).map(|p| p.paid_at);
                }
                (None, false)
            }
            (_, 0) => done(self.apply_atomic(step)),
            _ => unreachable!("phase {phase} of {step:?}"),
        }
    }

    fn apply_atomic(&mut self, step: &Step) -> Expect {
        match *step {
            Step::Issue(u) => self.issue(u),
            Step::Poll(TokenTarget::Token(i)) => Expect::Poll(Ok(self.view(i))),
            Step::Poll(_) => Expect::Poll(Err(ReadTokenError::Invalid)),
            Step::Admit => Expect::Admit(self.admit()),
            Step::ExpireTokens => Expect::Count(self.sweep_all(Sweep::Tokens)),
            Step::ReleaseHolds => Expect::Count(self.sweep_all(Sweep::Holds)),
            Step::Charge { user, amount, key } => {
                if key.is_some() {
                    self.last_keyed = Some(*step);
                }
                Expect::Charge(self.charge(user, amount, key))
            }
            Step::Balance(u) => Expect::Balance(self.balances[u]),
            Step::History { user, before, limit } => Expect::History(self.history(user, before, limit)),
            Step::PurgeKeys => Expect::Count(self.sweep_all(Sweep::Keys)),
            Step::Settings(p) => {
                self.settings = self.settings.patched(&p);
                Expect::Settings(self.queue_view())
            }
            Step::QueueState => Expect::QueueState(self.queue_view()),
            Step::Advance(to) => {
                self.now = self.now.max(to);
                Expect::Moved(self.now)
            }
            Step::Reserve { .. } | Step::GetReservation(..) | Step::Pay { .. } => {
                unreachable!("{step:?} runs in phases")
            }
        }
    }

    fn issue(&mut self, u: User) -> Expect {
        let now = self.now;
        if let Some(live) = self.tokens_of(u).find(|&i| self.tokens[i].status_at(now) != TokenStatus::Expired) {
            return Expect::Issue { view: self.view(live), created: false };
        }
        for t in self.tokens.iter_mut().filter(|t| t.user == u && t.lapsed_active_at(now)) {
            t.status = TokenStatus::Expired;
        }
        self.tokens.push(Token {
            user: u,
            status: TokenStatus::Waiting,
            issued_at: now,
            activated_at: None,
            expires_at: None,
        });
        Expect::Issue { view: self.view(self.tokens.len() - 1), created: true }
    }

    fn admit(&mut self) -> AdmissionOutcome {
        let (now, s) = (self.now, self.settings);
        if s.paused {
            return AdmissionOutcome::Paused;
        }
        if let Some(last) = self.last_admission_at {
            if now < last + s.interval {
                return AdmissionOutcome::NotDue { wait: last + s.interval - now };
            }
        }
        let waiting = count(self.tokens.iter().filter(|t| t.status == TokenStatus::Waiting));
        let room = match s.max_active {
            Some(cap) => u64::from(cap).saturating_sub(count(self.tokens.iter().filter(|t| t.live_active_at(now)))),
            None => u64::MAX,
        };
        let n = u64::from(s.batch).min(room).min(waiting);
        let mut left = n;
        for t in self.tokens.iter_mut().filter(|t| t.status == TokenStatus::Waiting) {
            if left == 0 {
                break;
            }
            t.status = TokenStatus::Active;
            t.activated_at = Some(now);
            t.expires_at = Some(now + s.ttl);
            left -= 1;
        }
        self.admitted_through += i64::try_from(n).unwrap_or(i64::MAX);
        if n > 0 {
            self.last_admission_at = Some(now);
            self.admissions.push(Admission { at: now, admitted: n, batch: s.batch, interval: s.interval });
        }
        AdmissionOutcome::Admitted(n)
    }

    /// The rows a sweep may change now: ACTIVE tokens past their time, HELD reservations past
    /// their lapse, records past their expiry.
    #[must_use]
    pub fn sweepable(&self, kind: Sweep) -> Vec<Row> {
        let now = self.now;
        match kind {
            Sweep::Tokens => {
                (0..self.tokens.len()).filter(|&t| self.tokens[t].lapsed_active_at(now)).map(Row::Token).collect()
            }
            Sweep::Holds => (0..self.reservations.len())
                .filter(|&r| {
                    let res = &self.reservations[r];
                    res.status == ReservationStatus::Held && res.held_until <= now
                })
                .map(Row::Hold)
                .collect(),
            Sweep::Keys => {
                self.records.iter().filter(|(_, r)| r.expires_at <= now).map(|(k, _)| Row::Key(k.0, k.1)).collect()
            }
        }
    }

    /// Sweeps one row: the token EXPIRED, the hold EXPIRED, the record deleted.
    pub fn sweep(&mut self, row: Row) {
        match row {
            Row::Token(t) => self.tokens[t].status = TokenStatus::Expired,
            Row::Hold(r) => self.reservations[r].status = ReservationStatus::Expired,
            Row::Key(u, k) => {
                self.records.remove(&(u, k));
            }
        }
    }

    /// A whole sweep run alone: every sweepable row (the world never has more than one tick's
    /// worth, see [`world::policy`]); returns how many.
    fn sweep_all(&mut self, kind: Sweep) -> u64 {
        let rows = self.sweepable(kind);
        for row in &rows {
            self.sweep(*row);
        }
        count_n(rows.len())
    }

    fn reserve(&mut self, u: User, schedule: Target, seat: Target) -> Result<usize, ReserveError> {
        let now = self.now;
        let (Target::Known(sch), Target::Known(s)) = (schedule, seat) else { return Err(ReserveError::NotFound) };
        if SEATS[s].schedule != sch || self.starts_at(sch) <= now {
            return Err(ReserveError::NotFound);
        }
        let claim = self.claim(s);
        if claim.is_some_and(|r| self.reservations[r].status_at(now) != ReservationStatus::Expired) {
            return Err(ReserveError::SeatUnavailable);
        }
        let max = world::policy().max_holds_per_user;
        let live = self.reservations.iter().filter(|r| r.user == u && r.status_at(now) == ReservationStatus::Held);
        if count(live) >= u64::from(max) {
            return Err(ReserveError::HoldLimit { max });
        }
        if let Some(lapsed) = claim {
            self.reservations[lapsed].status = ReservationStatus::Expired;
        }
        self.reservations.push(Res {
            user: u,
            seat: s,
            status: ReservationStatus::Held,
            created_at: now,
            held_until: now + world::policy().hold,
            paid_at: None,
        });
        Ok(self.reservations.len() - 1)
    }

    /// What the service checks before the payment's unit of work: the token is known, the
    /// key's record (a replay, or a key reused), the token ACTIVE.
    fn pay_gate(
        &self,
        token: TokenTarget,
        reservation: Target,
        key: Option<usize>,
    ) -> Result<(), Result<Paid, PayError>> {
        let TokenTarget::Token(t) = token else { return Err(Err(PayError::TokenInvalid)) };
        let user = self.tokens[t].user;
        if let Some(record) = key.and_then(|k| self.record(user, k)) {
            return Err(if record.fp == Fp::Pay(reservation) {
                Ok(Paid::Replayed(record.resp))
            } else {
                Err(PayError::Key(domain::error::KeyConflict::Reused))
            });
        }
        match self.tokens[t].status_at(self.now) {
            TokenStatus::Active => Ok(()),
            TokenStatus::Waiting => Err(Err(PayError::TokenNotActive)),
            TokenStatus::Expired => Err(Err(PayError::TokenExpired)),
        }
    }

    /// The payment's unit of work (after the gate let it through): the key's claim, then
    /// `settle` on what the store reads, then the settlement; the token is used up in the same
    /// unit when `use_up` (the store holds the queue).
    fn pay(&mut self, t: usize, reservation: Target, key: Option<usize>, use_up: bool) -> Result<Paid, PayError> {
        let now = self.now;
        let user = self.tokens[t].user;
        let fp = Fp::Pay(reservation);
        if let Some(record) = key.and_then(|k| self.record(user, k)) {
            return if record.fp == fp {
                Ok(Paid::Replayed(record.resp))
            } else {
                Err(PayError::Key(domain::error::KeyConflict::Reused))
            };
        }
        let r = match reservation {
            Target::Known(r) if self.reservations[r].user == user => r,
            _ => return Err(PayError::NotFound),
        };
        match self.reservations[r].status_at(now) {
            ReservationStatus::Paid => return Err(PayError::AlreadyPaid),
            ReservationStatus::Expired => return Err(PayError::HoldExpired),
            ReservationStatus::Held => {}
        }
        if self.payments.iter().any(|p| p.token == t)
            || (use_up && self.tokens[t].status_at(now) != TokenStatus::Active)
        {
            return Err(PayError::TokenExpired);
        }
        let (balance, price) = (self.balances[user], self.reservations[r].price());
        if balance < price {
            return Err(PayError::InsufficientBalance { balance: Won::new(balance), price: Won::new(price) });
        }
        let after = balance - price;
        let p = self.payments.len();
        self.payments.push(Payment {
            reservation: r,
            user,
            amount: price,
            balance_after: after,
            paid_at: now,
            token: t,
        });
        self.reservations[r].status = ReservationStatus::Paid;
        self.reservations[r].paid_at = Some(now);
        self.balances[user] = after;
        self.ledger.push(Entry {
            user,
            kind: LedgerKind::Payment,
            amount: -price,
            balance_after: after,
            at: now,
            payment: Some(p),
            reservation: Some(r),
        });
        if use_up {
            let used = &mut self.tokens[t];
            used.status = TokenStatus::Expired;
            used.expires_at = Some(now);
        }
        if let Some(k) = key {
            let expires_at = now + world::policy().idempotency_ttl;
            self.records.insert((user, k), Record { fp, resp: Resp::Paid(p), expires_at });
        }
        Ok(Paid::Fresh { payment: p, recorded: key.is_some() })
    }

    fn charge(&mut self, user: User, amount: i64, key: Option<usize>) -> Result<Charged, ChargeError> {
        let now = self.now;
        if !(1..=MAX_CHARGE).contains(&amount) {
            return Err(ChargeError::InvalidAmount);
        }
        let fp = Fp::Charge { user, amount };
        if let Some(record) = key.and_then(|k| self.record(user, k)) {
            return if record.fp == fp {
                Ok(Charged::Replayed(record.resp))
            } else {
                Err(ChargeError::Key(domain::error::KeyConflict::Reused))
            };
        }
        let balance = self.balances[user];
        if balance + amount > BALANCE_LIMIT {
            return Err(ChargeError::BalanceLimit { balance: Won::new(balance), amount: Won::new(amount) });
        }
        let after = balance + amount;
        self.balances[user] = after;
        self.ledger.push(Entry {
            user,
            kind: LedgerKind::Charge,
            amount,
            balance_after: after,
            at: now,
            payment: None,
            reservation: None,
        });
        let recorded = key.map(|k| {
            let resp = Resp::Charged { user, balance: after };
            let expires_at = now + world::policy().idempotency_ttl;
            self.records.insert((user, k), Record { fp, resp, expires_at });
            resp
        });
        Ok(Charged::Fresh { balance: after, recorded })
    }

    fn history(
        &self,
        user: User,
        before: Option<Target>,
        limit: Option<u32>,
    ) -> Result<(Vec<usize>, Option<usize>), HistoryError> {
        let limit = limit.unwrap_or(PAGE_DEFAULT);
        if !(1..=PAGE_MAX).contains(&limit) {
            return Err(HistoryError::InvalidLimit);
        }
        let mine = self.entries_of(user);
        let end = match before {
            None => mine.len(),
            Some(Target::Known(e)) if self.ledger[e].user == user => {
                mine.iter().position(|&i| i == e).ok_or(HistoryError::UnknownBefore)?
            }
            Some(_) => return Err(HistoryError::UnknownBefore),
        };
        let limit = limit as usize;
        let mut page: Vec<usize> = mine[..end].iter().rev().take(limit + 1).copied().collect();
        let more = page.len() > limit;
        page.truncate(limit);
        let next = if more { page.last().copied() } else { None };
        Ok((page, next))
    }

    /// Every `(user, key)` pair a record may exist for.
    pub fn key_slots() -> impl Iterator<Item = (User, usize)> {
        (0..USERS).flat_map(|u| (0..KEYS.len()).map(move |k| (u, k)))
    }
}

fn count<T>(it: impl Iterator<Item = T>) -> u64 {
    count_n(it.count())
}

fn count_n(n: usize) -> u64 {
    u64::try_from(n).unwrap_or(u64::MAX)
}
