//! The operations a case is made of, and how they are generated.
//!
//! An [`Op`] names what it acts on *abstractly* ("user 1's latest token", "the most recent
//! reservation"), and the model resolves it against its state when the step runs
//! (`Model::resolve` in [`crate::model::reference`]) into a concrete [`Step`]. So every op is valid
//! in every state (a reference to something that does not exist becomes an unknown token, an
//! unknown reservation...), which keeps shrinking free to delete any step: the shrunk sequence
//! still means something, and no precondition ever rejects it.

use domain::queue::{SettingsChange, SettingsPatch};
use proptest::prelude::*;
use proptest::sample::select;
use proptest::strategy::Union;
use time::{Duration, OffsetDateTime};

use crate::model::world::{CONCERTS, KEYS, ROOMS, SCHEDULES, SEATS, USERS};

/// A room other than `main`, by index into [`ROOMS`].
pub type RoomIx = usize;

/// A user by index.
pub type User = usize;

/// A queue token, as a client presents it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum TokenRef {
    /// The user's latest token.
    Latest(User),
    /// The token the user had before their latest (one that paid, or lapsed).
    Previous(User),
    /// A well-formed token nobody was issued.
    Unknown,
    /// A bearer string that is not a token.
    Malformed,
    /// The user's latest token of a room other than `main`.
    InRoom(RoomIx, User),
}

/// A reservation, as a client names it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ResRef {
    /// The user's latest reservation.
    LatestOf(User),
    /// The `k`-th most recent reservation of anybody (0: the newest).
    Recent(usize),
    /// An id nobody holds.
    Unknown,
}

/// A seat of a schedule, as a client names them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum SeatRef {
    /// Seat `seat` (index into [`SEATS`]) in its own schedule.
    Seat(usize),
    /// Seat `seat` under the other schedule: `NotFound`.
    Mismatched(usize),
    /// An unknown seat id under schedule `schedule`.
    UnknownSeat(usize),
    /// Seat `seat` under an unknown schedule id.
    UnknownSchedule(usize),
}

/// A ledger entry, as a client names it in `before`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum EntryRef {
    /// The user's own entry, `k`-th newest.
    Own(usize),
    /// The newest entry of the next user (not this user's: refused).
    Other,
    /// An id nobody has.
    Unknown,
}

/// A time the clock can be moved to, relative to the model's state.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Boundary {
    /// When the next admission is due.
    NextAdmission,
    /// The earliest expiry of a live ACTIVE token.
    TokenExpiry,
    /// The earliest lapse of a live hold.
    HoldLapse,
    /// The earliest expiry of an idempotency record.
    KeyExpiry,
    /// The start of the soonest schedule.
    ScheduleStart,
    /// The next opening of a room's pre-queue or of a room.
    RoomOpening,
    /// The earliest time a WAITING token of a room is absent (its last sight plus
    /// `abandonAfterSecs`).
    Abandonment,
    /// When the next admission of a room is due.
    RoomAdmission,
}

/// A move of the clock.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ClockMove {
    /// Forward by this much.
    By(Duration),
    /// To a boundary plus `offset` microseconds (-1, 0 or 1: both sides of it and on it); no
    /// move when that is not in the future.
    To(Boundary, i64),
}

/// An operator's change of the waiting room, each field optional.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Patch {
    /// Pause or resume.
    pub paused: Option<bool>,
    /// N.
    pub batch: Option<u32>,
    /// M, in seconds.
    pub interval_secs: Option<i64>,
    /// The ACTIVE TTL, in seconds.
    pub ttl_secs: Option<i64>,
    /// The cap (`Some(None)`: lift it).
    pub max_active: Option<Option<u32>>,
}

impl Patch {
    /// The domain's patch (every value here is within the contract's bounds).
    ///
    /// # Panics
    /// When it names nothing (the generator never makes one).
    #[must_use]
    pub fn to_domain(&self) -> SettingsPatch {
        SettingsPatch::new(SettingsChange {
            paused: self.paused,
            admit_batch: self.batch.map(i64::from),
            admit_interval_secs: self.interval_secs,
            active_ttl_secs: self.ttl_secs,
            max_active: self.max_active.map(|m| m.map(i64::from)),
        })
        .expect("generated patches are within the bounds and name a setting")
    }
}

/// An operator's change of a room other than `main`, each field optional.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct RoomPatch {
    /// Pause or resume.
    pub paused: Option<bool>,
    /// Close or reopen.
    pub closed: Option<bool>,
    /// N.
    pub batch: Option<u32>,
}

impl RoomPatch {
    /// The domain's change.
    #[must_use]
    pub fn to_domain(&self) -> domain::room::RoomChange {
        domain::room::RoomChange {
            closed: self.closed,
            settings: SettingsChange {
                paused: self.paused,
                admit_batch: self.batch.map(i64::from),
                ..SettingsChange::default()
            },
            ..domain::room::RoomChange::default()
        }
    }
}

/// One use case call (or clock move), abstract.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Op {
    /// `POST /queue/tokens`.
    Issue(User),
    /// `GET /queue/token`.
    Poll(TokenRef),
    /// One admission tick.
    Admit,
    /// The token expiry sweep.
    ExpireTokens,
    /// `POST /reservations` (authorise, then hold).
    Reserve(TokenRef, SeatRef),
    /// `GET /reservations/{id}` (authorise, then read).
    GetReservation(TokenRef, ResRef),
    /// The hold release sweep.
    ReleaseHolds,
    /// `POST /payments`, with an optional key (index into [`KEYS`]).
    Pay(TokenRef, ResRef, Option<usize>),
    /// `POST /users/{id}/balance/charge`, with an optional key.
    Charge(User, i64, Option<usize>),
    /// The last keyed request again with its key: the same request (`true`) or another one.
    Retry(bool),
    /// `GET /users/{id}/balance`.
    Balance(User),
    /// `GET /users/{id}/balance/history?before=&limit=`.
    History(User, Option<EntryRef>, Option<u32>),
    /// The idempotency records' purge.
    PurgeKeys,
    /// `PATCH /admin/queue`.
    Settings(Patch),
    /// `GET /admin/queue`.
    QueueState,
    /// Time passes.
    Advance(ClockMove),
    /// `POST /rooms/{id}/tokens`.
    Join(RoomIx, User),
    /// The rooms' scheduler check (`tick_rooms`).
    TickRooms,
    /// `PATCH /admin/rooms/{id}`.
    RoomChange(RoomIx, RoomPatch),
    /// `GET /admin/rooms/{id}`.
    RoomView(RoomIx),
    /// `GET /concerts/{id}/schedules` (authorise, then list) of concert `c`.
    Schedules(TokenRef, usize),
    /// `GET /schedules/{id}/seats` (authorise, then list) of schedule `i`.
    Seats(TokenRef, usize),
}

/// Amounts of a charge: invalid ones, small ones, both sides of the balance limit for the
/// richest user (5,000 under it), and the largest single charge.
pub const AMOUNTS: [i64; 10] = [-1, 0, 1, 1_000, 2_000, 5_000, 5_001, 10_000, 1_000_000_000, 1_000_000_001];

/// Short moves: seconds, and both sides of a minute (admission).
pub const SHORT_MOVES_SECS: [i64; 4] = [1, 10, 59, 61];

/// Long moves: the hold, the TTL, the key TTL and an hour.
pub const LONG_MOVES_SECS: [i64; 4] = [300, 600, 900, 3_600];

fn user() -> impl Strategy<Value = User> {
    0..USERS
}

/// A token: mostly the user's latest.
pub fn token_ref() -> impl Strategy<Value = TokenRef> {
    prop_oneof![
        16 => user().prop_map(TokenRef::Latest),
        2 => user().prop_map(TokenRef::Previous),
        1 => Just(TokenRef::Unknown),
        1 => Just(TokenRef::Malformed),
        4 => (0..ROOMS.len(), user()).prop_map(|(r, u)| TokenRef::InRoom(r, u)),
    ]
}

/// A reservation: mostly the presenting user's latest.
fn res_ref(user: User) -> impl Strategy<Value = ResRef> {
    prop_oneof![
        12 => Just(ResRef::LatestOf(user)),
        2 => (0..USERS).prop_map(ResRef::LatestOf),
        5 => (0..3_usize).prop_map(ResRef::Recent),
        1 => Just(ResRef::Unknown),
    ]
}

/// A seat for a hold with `token`: mostly one its room sells.
fn seat_ref_for(token: TokenRef) -> BoxedStrategy<SeatRef> {
    let room = match token {
        TokenRef::InRoom(r, _) => Some(r),
        _ => None,
    };
    let own: Vec<usize> =
        (0..SEATS.len()).filter(|&s| crate::model::world::room_of_schedule(SEATS[s].schedule) == room).collect();
    if own.is_empty() {
        return seat_ref().boxed();
    }
    prop_oneof![
        14 => select(own).prop_map(SeatRef::Seat),
        3 => seat_ref(),
    ]
    .boxed()
}

fn seat_ref() -> impl Strategy<Value = SeatRef> {
    prop_oneof![
        16 => (0..SEATS.len()).prop_map(SeatRef::Seat),
        1 => (0..SEATS.len()).prop_map(SeatRef::Mismatched),
        1 => (0..SCHEDULES.len()).prop_map(SeatRef::UnknownSeat),
        1 => (0..SEATS.len()).prop_map(SeatRef::UnknownSchedule),
    ]
}

fn key() -> impl Strategy<Value = Option<usize>> {
    prop_oneof![2 => Just(None), 3 => (0..KEYS.len()).prop_map(Some)]
}

fn user_of(token: TokenRef) -> User {
    match token {
        TokenRef::Latest(u) | TokenRef::Previous(u) | TokenRef::InRoom(_, u) => u,
        TokenRef::Unknown | TokenRef::Malformed => 0,
    }
}

fn patch() -> impl Strategy<Value = Patch> {
    (
        proptest::option::weighted(0.5, proptest::bool::weighted(0.3)),
        proptest::option::weighted(0.3, 1..=3_u32),
        proptest::option::weighted(0.3, select(vec![1_i64, 30, 60])),
        proptest::option::weighted(0.3, select(vec![10_i64, 60, 600])),
        proptest::option::weighted(0.3, select(vec![None, Some(1_u32), Some(2)])),
    )
        .prop_map(|(paused, batch, interval_secs, ttl_secs, max_active)| {
            let patch = Patch { paused, batch, interval_secs, ttl_secs, max_active };
            if patch == (Patch { paused: None, batch: None, interval_secs: None, ttl_secs: None, max_active: None }) {
                Patch { paused: Some(false), ..patch }
            } else {
                patch
            }
        })
}

fn room_patch() -> impl Strategy<Value = RoomPatch> {
    (
        proptest::option::weighted(0.5, proptest::bool::weighted(0.4)),
        proptest::option::weighted(0.3, proptest::bool::weighted(0.4)),
        proptest::option::weighted(0.3, 1..=3_u32),
    )
        .prop_map(|(paused, closed, batch)| {
            let patch = RoomPatch { paused, closed, batch };
            if patch == (RoomPatch { paused: None, closed: None, batch: None }) {
                RoomPatch { closed: Some(false), ..patch }
            } else {
                patch
            }
        })
}

fn clock_move() -> impl Strategy<Value = ClockMove> {
    let boundary = select(vec![
        Boundary::NextAdmission,
        Boundary::TokenExpiry,
        Boundary::HoldLapse,
        Boundary::KeyExpiry,
        Boundary::ScheduleStart,
        Boundary::RoomOpening,
        Boundary::RoomOpening,
        Boundary::Abandonment,
        Boundary::RoomAdmission,
    ]);
    prop_oneof![
        1 => Just(ClockMove::By(Duration::microseconds(1))),
        3 => select(SHORT_MOVES_SECS.to_vec()).prop_map(|s| ClockMove::By(Duration::seconds(s))),
        1 => select(LONG_MOVES_SECS.to_vec()).prop_map(|s| ClockMove::By(Duration::seconds(s))),
        4 => (boundary, -1_i64..=1).prop_map(|(b, off)| ClockMove::To(b, off)),
    ]
}

fn history_limit() -> impl Strategy<Value = Option<u32>> {
    prop_oneof![3 => Just(None), 4 => select(vec![0_u32, 1, 2, 3, 100, 101]).prop_map(Some)]
}

fn entry_ref() -> impl Strategy<Value = Option<EntryRef>> {
    prop_oneof![
        3 => Just(None),
        3 => (0..4_usize).prop_map(|k| Some(EntryRef::Own(k))),
        1 => Just(Some(EntryRef::Other)),
        1 => Just(Some(EntryRef::Unknown)),
    ]
}

/// Every op, weighted towards the steps of a purchase, knowing nothing of the state. `quiet`
/// leaves out clock moves (time stands still while threads race).
pub fn op(quiet: bool) -> BoxedStrategy<Op> {
    ops(
        quiet,
        token_ref().boxed(),
        token_ref().boxed(),
        user().boxed(),
        Weights { issue: 8, admit: 8, protected: 16, tick_rooms: 6, clock: 10 },
        Vec::new(),
    )
}

/// What of the model's state biases the choice of the next op (see [`op_in`]); the model
/// computes it (`Model::bias`), so that the ops know nothing of the model.
#[derive(Debug, Clone, Default)]
pub struct Bias {
    /// Users whose latest token is ACTIVE.
    pub active: Vec<User>,
    /// Users without a live token.
    pub idle: Vec<User>,
    /// Of the users who can act, those holding a live hold.
    pub payers: Vec<User>,
    /// Whether somebody waits in line.
    pub waiting: bool,
    /// `(room, user)` whose latest token of the room is ACTIVE.
    pub room_active: Vec<(RoomIx, User)>,
    /// Whether somebody waits in a room.
    pub room_waiting: bool,
    /// Rooms taking joiners before their opening (their pre-queue fills now or never).
    pub prequeue: Vec<RoomIx>,
    /// `(room, user)` for the users not yet in those rooms' pre-queues.
    pub prequeue_joiners: Vec<(RoomIx, User)>,
    /// Whether a room's pre-queue or opening is still ahead.
    pub opening_ahead: bool,
}

/// Every op, with the users who can act now preferred: a protected call mostly presents the
/// latest token of a user whose token is ACTIVE, an issue mostly comes from a user without a
/// live token, and admission comes up more while somebody waits. The choice only biases which
/// abstract op is drawn, so a shrunk sequence stays valid whatever it lost.
pub fn op_in(bias: &Bias) -> BoxedStrategy<Op> {
    let Bias { active, idle, payers, waiting, room_active, room_waiting, prequeue, prequeue_joiners, opening_ahead } =
        bias.clone();
    let holders: Vec<User> = (0..USERS).filter(|u| !idle.contains(u)).collect();
    let acting = if active.is_empty() { holders } else { active };
    let mut tokens: Vec<(u32, BoxedStrategy<TokenRef>)> = vec![(1, token_ref().boxed())];
    if !acting.is_empty() {
        tokens.push((6, select(acting.clone()).prop_map(TokenRef::Latest).boxed()));
    }
    if !room_active.is_empty() {
        tokens.push((4, select(room_active.clone()).prop_map(|(r, u)| TokenRef::InRoom(r, u)).boxed()));
    }
    let token = Union::new_weighted(tokens).boxed();
    let issuer = if idle.is_empty() { user().boxed() } else { prop_oneof![3 => select(idle), 1 => user()].boxed() };
    let room_payers: Vec<TokenRef> =
        room_active.iter().filter(|(_, u)| payers.contains(u)).map(|&(r, u)| TokenRef::InRoom(r, u)).collect();
    let payers: Vec<TokenRef> =
        payers.into_iter().filter(|u| acting.contains(u)).map(TokenRef::Latest).chain(room_payers).collect();
    let payer =
        if payers.is_empty() { token.clone() } else { prop_oneof![3 => select(payers), 1 => token.clone()].boxed() };
    let weights = Weights {
        issue: if acting.is_empty() { 30 } else { 8 },
        admit: if waiting { 14 } else { 4 },
        protected: if acting.is_empty() && room_active.is_empty() { 4 } else { 16 },
        tick_rooms: if room_waiting { 12 } else { 4 },
        clock: if prequeue.is_empty() { 10 } else { 3 },
    };
    let mut extra: Vec<(u32, BoxedStrategy<Op>)> = Vec::new();
    let to_opening = || Just(Op::Advance(ClockMove::To(Boundary::RoomOpening, 0))).boxed();
    if !prequeue_joiners.is_empty() {
        // A pre-queue fills only before its opening: join it while it is open.
        extra.push((30, select(prequeue_joiners).prop_map(|(r, u)| Op::Join(r, u)).boxed()));
        extra.push((2, to_opening()));
    } else if !prequeue.is_empty() {
        // Everybody is in: on to the opening and its draw.
        extra.push((4, (select(prequeue), user()).prop_map(|(r, u)| Op::Join(r, u)).boxed()));
        extra.push((12, to_opening()));
    } else if opening_ahead {
        extra.push((3, to_opening()));
    }
    ops(false, token, payer, issuer, weights, extra)
}

/// The weights that depend on the state.
struct Weights {
    issue: u32,
    admit: u32,
    protected: u32,
    tick_rooms: u32,
    clock: u32,
}

fn ops(
    quiet: bool,
    token: BoxedStrategy<TokenRef>,
    payer: BoxedStrategy<TokenRef>,
    issuer: BoxedStrategy<User>,
    w: Weights,
    extra: Vec<(u32, BoxedStrategy<Op>)>,
) -> BoxedStrategy<Op> {
    let pay =
        (payer, key()).prop_flat_map(|(token, key)| res_ref(user_of(token)).prop_map(move |r| Op::Pay(token, r, key)));
    let get = token.clone().prop_flat_map(|t| res_ref(user_of(t)).prop_map(move |r| Op::GetReservation(t, r)));
    let mut ops: Vec<(u32, BoxedStrategy<Op>)> = vec![
        (w.issue, issuer.prop_map(Op::Issue).boxed()),
        (4, token_ref().prop_map(Op::Poll).boxed()),
        (w.admit, Just(Op::Admit).boxed()),
        (3, Just(Op::ExpireTokens).boxed()),
        (w.protected, token.clone().prop_flat_map(|t| seat_ref_for(t).prop_map(move |s| Op::Reserve(t, s))).boxed()),
        (3, get.boxed()),
        (3, Just(Op::ReleaseHolds).boxed()),
        (w.protected, pay.boxed()),
        (8, (user(), select(AMOUNTS.to_vec()), key()).prop_map(|(u, a, k)| Op::Charge(u, a, k)).boxed()),
        (5, any::<bool>().prop_map(Op::Retry).boxed()),
        (2, user().prop_map(Op::Balance).boxed()),
        (3, (user(), entry_ref(), history_limit()).prop_map(|(u, b, l)| Op::History(u, b, l)).boxed()),
        (2, Just(Op::PurgeKeys).boxed()),
        (3, patch().prop_map(Op::Settings).boxed()),
        (1, Just(Op::QueueState).boxed()),
        (8, (0..ROOMS.len(), user()).prop_map(|(r, u)| Op::Join(r, u)).boxed()),
        (4, (0..ROOMS.len(), user()).prop_map(|(r, u)| Op::Poll(TokenRef::InRoom(r, u))).boxed()),
        (w.tick_rooms, Just(Op::TickRooms).boxed()),
        (2, (0..ROOMS.len(), room_patch()).prop_map(|(r, p)| Op::RoomChange(r, p)).boxed()),
        (1, (0..ROOMS.len()).prop_map(Op::RoomView).boxed()),
        (3, (token.clone(), 0..CONCERTS.len()).prop_map(|(t, c)| Op::Schedules(t, c)).boxed()),
        (3, (token.clone(), 0..SCHEDULES.len()).prop_map(|(t, i)| Op::Seats(t, i)).boxed()),
    ];
    if !quiet {
        ops.push((w.clock, clock_move().prop_map(Op::Advance).boxed()));
    }
    ops.extend(extra);
    Union::new_weighted(ops).boxed()
}

/// When a clock move lands, given the boundary's time (if any) and now.
#[must_use]
pub fn landing(now: OffsetDateTime, boundary: Option<OffsetDateTime>, offset_micros: i64) -> OffsetDateTime {
    boundary.map(|b| b + Duration::microseconds(offset_micros)).filter(|t| *t > now).unwrap_or(now)
}
