//! The system under test's side: running a [`Step`] through the use cases, and turning the
//! model's [`Expect`] into the exact value the service must return.
//!
//! The store chooses token values and ids; the model only knows *which* token or reservation
//! it is (an index). [`Bindings`] remember what each index turned out to be. A step that makes
//! something new binds it from the store's answer (after checking it is new), and every later
//! expectation uses the bound value, so a store that answers with another token, reservation or
//! payment than the one it made is caught.

use domain::account::{LedgerEntry, LedgerPage};
use domain::catalogue::SeatClaim;
use domain::catalogue::{ScheduleSummary, SeatView};
use domain::clock::{Clock, ManualClock};
use domain::error::{
    BalanceError, ChargeError, GetReservationError, GetRoomError, HistoryError, IssueTokenError, ListSchedulesError,
    ListSeatsError, PayError, ReadTokenError, ReserveError, StoreError, UpdateQueueError, UpdateRoomError,
};
use domain::idempotency::{
    Effect, Fingerprint, IdempotencyKey, IdempotencyRecord, IdempotencyRequest, Outcome, StoredResponse,
};
use domain::ids::{LedgerEntryId, PaymentId, ReservationId};
use domain::money::Won;
use domain::payment::Payment;
use domain::queue::DrawRecord;
use domain::queue::{
    AdmissionOutcome, ExpiredReason, QueueCursor, QueueState, QueueStats, QueueToken, TokenStatus, TokenValue,
    TokenView,
};
use domain::reservation::Reservation;
use domain::service::{IssuedToken, RoomTick, RoomView, Ticketing};

use crate::fixture::render;
use crate::model::reference::{
    Charged, Expect, Fp, Model, Paid, QueueView, Refused, Res, Resp, RoomTickPart, RoomViewExpect, Step, Target,
    TokenTarget, View,
};
use crate::model::world::{self, KEYS, SEATS};

/// What each index of the model turned out to be in the store.
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash)]
pub struct Bindings {
    /// Token values by index (`seq - 1`).
    pub tokens: Vec<TokenValue>,
    /// Reservation ids by index.
    pub reservations: Vec<ReservationId>,
    /// Payment ids by index.
    pub payments: Vec<PaymentId>,
    /// Ledger entry ids by index, bound when the ledger is read after the step that made them.
    pub entries: Vec<Option<LedgerEntryId>>,
    /// Each room's token values, in the order issued.
    pub room_tokens: Vec<Vec<TokenValue>>,
}

impl Bindings {
    /// The bearer string a client presents.
    #[must_use]
    pub fn bearer(&self, t: TokenTarget) -> String {
        match t {
            TokenTarget::Token(i) => self.tokens[i].as_str().to_owned(),
            TokenTarget::Room(r, i) => self.room_tokens[r][i].as_str().to_owned(),
            TokenTarget::Unknown => world::unknown_token().as_str().to_owned(),
            TokenTarget::Malformed => world::MALFORMED_TOKEN.to_owned(),
        }
    }

    /// The reservation id a client names.
    #[must_use]
    pub fn reservation(&self, t: Target) -> ReservationId {
        match t {
            Target::Known(r) => self.reservations[r],
            Target::Unknown => world::unknown_reservation(),
        }
    }

    /// The ledger entry id a client names.
    ///
    /// # Panics
    /// When the entry was never bound (it always is: the ledger is read after every step).
    #[must_use]
    pub fn entry(&self, t: Target) -> LedgerEntryId {
        match t {
            Target::Known(e) => self.entries[e].expect("every entry a step names was bound by an earlier read"),
            Target::Unknown => world::unknown_entry(),
        }
    }
}

/// What the service answered to a step, in the domain's own types.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Observed {
    /// `issue_token`.
    Issue(Result<IssuedToken, IssueTokenError>),
    /// `read_token`.
    Poll(Result<TokenView, ReadTokenError>),
    /// `admit`.
    Admit(Result<AdmissionOutcome, StoreError>),
    /// A sweep.
    Count(Result<u64, StoreError>),
    /// `authorize` + `reserve`.
    Reserve(Result<Reservation, Refused<ReserveError>>),
    /// `authorize` + `reservation`.
    GetReservation(Result<Reservation, Refused<GetReservationError>>),
    /// `pay`.
    Pay(Result<Outcome<Payment>, PayError>),
    /// `charge`.
    Charge(Result<Outcome<Won>, ChargeError>),
    /// `balance`.
    Balance(Result<Won, BalanceError>),
    /// `balance_history`.
    History(Result<LedgerPage, HistoryError>),
    /// `update_queue`.
    Settings(Result<QueueState, UpdateQueueError>),
    /// `queue_state`.
    QueueState(Result<QueueState, StoreError>),
    /// The clock after a move.
    Moved(time::OffsetDateTime),
    /// `tick_rooms`.
    TickRooms(Result<Vec<Result<RoomTick, StoreError>>, StoreError>),
    /// `update_room`.
    RoomChange(Result<RoomView, UpdateRoomError>),
    /// `room_view`.
    RoomView(Result<RoomView, GetRoomError>),
    /// `authorize` + `schedules`.
    Schedules(Result<Vec<ScheduleSummary>, Refused<ListSchedulesError>>),
    /// `authorize` + `seats`.
    Seats(Result<Vec<SeatView>, Refused<ListSeatsError>>),
}

impl Observed {
    /// Whether this answer says "nothing was done, try again": a store that gave up waiting or
    /// could not be reached, an admission lock held by another caller, a key in flight. Only
    /// racing callers may get one; the model then treats the step as one that changed
    /// nothing (which the contract promises for each of them).
    #[must_use]
    pub fn is_retry_later(&self) -> bool {
        fn transient(e: &StoreError) -> bool {
            e.is_transient()
        }
        match self {
            Self::Issue(Err(IssueTokenError::Store(e)))
            | Self::Poll(Err(ReadTokenError::Store(e)))
            | Self::Admit(Err(e))
            | Self::Count(Err(e))
            | Self::Reserve(Err(Refused::Op(ReserveError::Store(e))))
            | Self::GetReservation(Err(Refused::Op(GetReservationError::Store(e))))
            | Self::Balance(Err(BalanceError::Store(e)))
            | Self::History(Err(HistoryError::Store(e)))
            | Self::Settings(Err(UpdateQueueError::Store(e)))
            | Self::QueueState(Err(e))
            | Self::Pay(Err(PayError::Store(e)))
            | Self::Charge(Err(ChargeError::Store(e)))
            | Self::TickRooms(Err(e))
            | Self::RoomChange(Err(UpdateRoomError::Store(e)))
            | Self::RoomView(Err(GetRoomError::Store(e)))
            | Self::Schedules(Err(Refused::Op(ListSchedulesError::Store(e))))
            | Self::Seats(Err(Refused::Op(ListSeatsError::Store(e)))) => transient(e),
            Self::TickRooms(Ok(ticks)) => ticks.iter().any(|t| t.as_ref().is_err_and(StoreError::is_transient)),
            Self::Reserve(Err(Refused::Auth(domain::error::AuthorizeError::Store(e))))
            | Self::GetReservation(Err(Refused::Auth(domain::error::AuthorizeError::Store(e))))
            | Self::Schedules(Err(Refused::Auth(domain::error::AuthorizeError::Store(e))))
            | Self::Seats(Err(Refused::Auth(domain::error::AuthorizeError::Store(e)))) => transient(e),
            Self::Admit(Ok(AdmissionOutcome::Busy))
            | Self::Pay(Err(PayError::Key(domain::error::KeyConflict::InFlight)))
            | Self::Charge(Err(ChargeError::Key(domain::error::KeyConflict::InFlight))) => true,
            _ => false,
        }
    }
}

fn idempotency(key: Option<usize>) -> Option<IdempotencyRequest<'static>> {
    key.map(|k| IdempotencyRequest {
        key: IdempotencyKey::parse(KEYS[k]).expect("the world's keys are valid"),
        render: &render,
    })
}

/// Runs one step through the use cases (a clock move sets `clock`).
#[must_use]
pub fn execute(app: &Ticketing, clock: &ManualClock, b: &Bindings, step: &Step) -> Observed {
    match *step {
        Step::Issue(u) => Observed::Issue(app.issue_token(world::user(u))),
        Step::Poll(t) => Observed::Poll(app.read_token(&b.bearer(t))),
        Step::Admit => Observed::Admit(app.admit()),
        Step::ExpireTokens => Observed::Count(app.expire_tokens()),
        Step::Reserve { token, schedule, seat } => {
            Observed::Reserve(app.authorize(&b.bearer(token)).map_err(Refused::Auth).and_then(|who| {
                let schedule = match schedule {
                    Target::Known(i) => world::schedule(i),
                    Target::Unknown => world::unknown_schedule(),
                };
                let seat = match seat {
                    Target::Known(i) => world::seat(i),
                    Target::Unknown => world::unknown_seat(),
                };
                app.reserve(&who, schedule, seat).map_err(Refused::Op)
            }))
        }
        Step::GetReservation(token, r) => Observed::GetReservation(
            app.authorize(&b.bearer(token))
                .map_err(Refused::Auth)
                .and_then(|who| app.reservation(&who, b.reservation(r)).map_err(Refused::Op)),
        ),
        Step::ReleaseHolds => Observed::Count(app.release_holds()),
        Step::Pay { token, reservation, key } => {
            Observed::Pay(app.pay(&b.bearer(token), b.reservation(reservation), idempotency(key)))
        }
        Step::Charge { user, amount, key } => Observed::Charge(app.charge(world::user(user), amount, idempotency(key))),
        Step::Balance(u) => Observed::Balance(app.balance(world::user(u))),
        Step::History { user, before, limit } => {
            Observed::History(app.balance_history(world::user(user), before.map(|t| b.entry(t)), limit))
        }
        Step::PurgeKeys => Observed::Count(app.purge_idempotency_keys()),
        Step::Settings(p) => Observed::Settings(app.update_queue("model", &p.to_domain()).map(one_line)),
        Step::QueueState => Observed::QueueState(app.queue_state().map(one_line)),
        Step::Advance(to) => {
            if to > clock.now() {
                clock.set(to);
            }
            Observed::Moved(clock.now())
        }
        Step::Join(r, u) => Observed::Issue(app.issue_token_in(world::user(u), &world::room_id(r))),
        Step::TickRooms(_) => Observed::TickRooms(app.tick_rooms()),
        Step::RoomChange(r, p) => {
            Observed::RoomChange(app.update_room("model", &world::room_id(r), &p.to_domain()).map(one_room_line))
        }
        Step::RoomView(r) => Observed::RoomView(app.room_view(&world::room_id(r)).map(one_room_line)),
        Step::Schedules(token, c) => Observed::Schedules(
            app.authorize(&b.bearer(token))
                .map_err(Refused::Auth)
                .and_then(|who| app.schedules(&who, world::concert_of(c)).map_err(Refused::Op)),
        ),
        Step::Seats(token, i) => Observed::Seats(
            app.authorize(&b.bearer(token))
                .map_err(Refused::Auth)
                .and_then(|who| app.seats(&who, world::schedule(i)).map_err(Refused::Op)),
        ),
    }
}

/// A room's view with its line's epoch left out (see [`one_line`]).
#[must_use]
pub fn one_room_line(mut view: RoomView) -> RoomView {
    view.stats.cursor.epoch = 0;
    view
}

/// Binds what `expect` makes new from the store's answer: a token, a reservation, a payment.
///
/// # Errors
/// When the store's new thing is not new (its value or id is bound to another index already).
pub fn bind_new(expect: &Expect, observed: &Observed, b: &Bindings) -> Result<Bindings, String> {
    let mut b = b.clone();
    match (expect, observed) {
        (Expect::Issue { created: true, view }, Observed::Issue(Ok(got))) if view.token == b.tokens.len() => {
            let value = &got.view.token.value;
            if let Some(old) = b.tokens.iter().position(|v| v == value) {
                return Err(format!("the new token has the value of token seq {}", old + 1));
            }
            b.tokens.push(value.clone());
        }
        (Expect::Join(Ok((view, true))), Observed::Issue(Ok(got))) => {
            let r = view.room.expect("a join's token is a room's");
            b.room_tokens.resize(world::ROOMS.len(), Vec::new());
            if view.token == b.room_tokens[r].len() {
                let value = &got.view.token.value;
                if b.room_tokens.iter().flatten().chain(&b.tokens).any(|v| v == value) {
                    return Err(format!("the new token of room {r} has the value of an older token"));
                }
                b.room_tokens[r].push(value.clone());
            }
        }
        (Expect::Join(Ok((_, true))), _) => return Err(format!("expected {expect:#?}\n     got {observed:#?}")),
        (Expect::Reserve(Ok((r, _))), Observed::Reserve(Ok(got))) if *r == b.reservations.len() => {
            if b.reservations.contains(&got.id) {
                return Err(format!("the new reservation has the id of an older one: {}", got.id));
            }
            b.reservations.push(got.id);
        }
        (Expect::Pay(Ok(Paid::Fresh { payment, .. })), Observed::Pay(Ok(Outcome::Fresh { value, .. })))
            if *payment == b.payments.len() =>
        {
            if b.payments.contains(&value.id) {
                return Err(format!("the new payment has the id of an older one: {}", value.id));
            }
            b.payments.push(value.id);
        }
        (Expect::History(Ok((entries, _))), observed) => {
            // A page may show entries made since the ledger was last read (a racing charge):
            // bind them from the page, which is then compared in full.
            let page = match observed {
                Observed::History(Ok(page)) if page.entries.len() == entries.len() => page,
                _ if entries.iter().all(|&e| b.entries.get(e).is_some_and(Option::is_some)) => return Ok(b),
                _ => return Err(format!("expected {expect:#?}\n     got {observed:#?}")),
            };
            for (&e, got) in entries.iter().zip(&page.entries) {
                if b.entries.len() <= e {
                    b.entries.resize(e + 1, None);
                }
                if b.entries[e].is_none() {
                    if b.entries.contains(&Some(got.id)) {
                        return Err(format!("ledger entry id {} is bound to another entry", got.id));
                    }
                    b.entries[e] = Some(got.id);
                }
            }
        }
        (Expect::Issue { created: true, .. } | Expect::Reserve(Ok(_)) | Expect::Pay(Ok(Paid::Fresh { .. })), _) => {
            return Err(format!("expected {expect:#?}\n     got {observed:#?}"));
        }
        _ => {}
    }
    Ok(b)
}

/// The token as the model says it is stored.
#[must_use]
pub fn queue_token(m: &Model, b: &Bindings, i: usize) -> QueueToken {
    let t = &m.tokens[i];
    QueueToken {
        value: b.tokens[i].clone(),
        user_id: world::user(t.user),
        seq: i64::try_from(i + 1).unwrap_or(i64::MAX),
        status: t.status,
        issued_at: t.issued_at,
        activated_at: t.activated_at,
        expires_at: t.expires_at,
        expired_reason: None,
    }
}

/// A token view as expected.
#[must_use]
pub fn token_view(v: &View, b: &Bindings) -> TokenView {
    let t = &v.stored;
    let value = match v.room {
        None => b.tokens[v.token].clone(),
        Some(r) => b.room_tokens[r][v.token].clone(),
    };
    TokenView {
        token: QueueToken {
            value,
            user_id: world::user(t.user),
            seq: v.seq,
            status: t.status,
            issued_at: t.issued_at,
            activated_at: t.activated_at,
            expires_at: t.expires_at,
            expired_reason: t.reason,
        },
        draw_at: v.draw_at,
        expired_reason: (v.status == TokenStatus::Expired).then(|| t.reason.unwrap_or(ExpiredReason::Ttl)),
        status: v.status,
        position: v.position,
        estimated_wait_secs: v.wait,
        paused: v.paused,
        poll_after_secs: v.poll_after,
    }
}

/// A reservation as expected.
#[must_use]
pub fn reservation(r: usize, res: &Res, b: &Bindings) -> Reservation {
    let seat = world::seat_value(res.seat);
    Reservation {
        id: b.reservations[r],
        user_id: world::user(res.user),
        schedule_id: seat.schedule_id,
        seat_id: seat.id,
        seat_number: seat.number,
        price: seat.price,
        status: res.status,
        created_at: res.created_at,
        held_until: res.held_until,
        paid_at: res.paid_at,
    }
}

/// The seat claim of reservation `r`.
#[must_use]
pub fn claim(m: &Model, b: &Bindings, r: usize) -> SeatClaim {
    let res = &m.reservations[r];
    SeatClaim { reservation_id: b.reservations[r], status: res.status, held_until: res.held_until }
}

/// Payment `p` as expected.
#[must_use]
pub fn payment(m: &Model, b: &Bindings, p: usize) -> Payment {
    let pay = &m.payments[p];
    Payment {
        id: b.payments[p],
        reservation_id: b.reservations[pay.reservation],
        user_id: world::user(pay.user),
        amount: Won::new(pay.amount),
        balance_after: Won::new(pay.balance_after),
        paid_at: pay.paid_at,
    }
}

/// A recorded response as expected.
#[must_use]
pub fn response(m: &Model, b: &Bindings, r: Resp) -> StoredResponse {
    match r {
        Resp::Charged { user, balance } => {
            render(&Effect::Charged { user: world::user(user), balance: Won::new(balance) })
        }
        Resp::Paid(p) => render(&Effect::Paid(payment(m, b, p))),
    }
}

/// A record as expected.
#[must_use]
pub fn record(m: &Model, b: &Bindings, fp: Fp, resp: Resp) -> IdempotencyRecord {
    let fingerprint = match fp {
        Fp::Charge { user, amount } => Fingerprint::charge(world::user(user), Won::new(amount)),
        Fp::Pay(t) => Fingerprint::payment(b.reservation(t)),
    };
    IdempotencyRecord { fingerprint, response: response(m, b, resp) }
}

/// Ledger entry `e` as expected.
#[must_use]
pub fn entry(m: &Model, b: &Bindings, e: usize) -> LedgerEntry {
    let x = &m.ledger[e];
    LedgerEntry {
        id: b.entry(Target::Known(e)),
        user_id: world::user(x.user),
        kind: x.kind,
        amount: Won::new(x.amount),
        balance_after: Won::new(x.balance_after),
        at: x.at,
        payment_id: x.payment.map(|p| b.payments[p]),
        reservation_id: x.reservation.map(|r| b.reservations[r]),
    }
}

/// The queue state with the line's epoch left out: the model has one line throughout, and a
/// store that names its lines names it by its own clock (Redis); the queue suite pins that the
/// epoch stays while the line lives.
#[must_use]
pub fn one_line(mut state: QueueState) -> QueueState {
    state.stats.cursor.epoch = 0;
    state
}

/// The operator's view as expected.
#[must_use]
pub fn queue_state(q: &QueueView) -> QueueState {
    let s = q.settings;
    QueueState {
        stats: QueueStats {
            waiting: q.waiting,
            active: q.active,
            issued_through: q.issued_through,
            cursor: QueueCursor {
                admitted_through: q.admitted_through,
                last_admission_at: q.last_admission_at,
                epoch: 0,
                draw: None,
            },
            now: q.now,
            abandoned: 0,
        },
        settings: s.domain(),
        next_admission_at: (!s.paused).then(|| s.next_admission(q.last_admission_at, q.now)),
    }
}

/// The exact answer the service must give, in the domain's types. `m` is the model *after*
/// the step and `b` the bindings with the step's new things bound.
#[must_use]
pub fn materialize(expect: &Expect, m: &Model, b: &Bindings) -> Observed {
    match expect {
        Expect::Issue { view, created } => {
            Observed::Issue(Ok(IssuedToken { view: token_view(view, b), created: *created }))
        }
        Expect::Poll(r) => Observed::Poll(r.clone().map(|v| token_view(&v, b))),
        Expect::Admit(a) => Observed::Admit(Ok(*a)),
        Expect::Count(n) => Observed::Count(Ok(*n)),
        Expect::Reserve(r) => Observed::Reserve(r.clone().map(|(i, res)| reservation(i, &res, b))),
        Expect::GetReservation(r) => Observed::GetReservation(r.clone().map(|(i, res)| reservation(i, &res, b))),
        Expect::Pay(r) => Observed::Pay(r.clone().map(|paid| match paid {
            Paid::Fresh { payment: p, recorded } => {
                Outcome::Fresh { value: payment(m, b, p), recorded: recorded.then(|| response(m, b, Resp::Paid(p))) }
            }
            Paid::Replayed(resp) => Outcome::Replayed(response(m, b, resp)),
        })),
        Expect::Charge(r) => Observed::Charge(r.clone().map(|c| match c {
            Charged::Fresh { balance, recorded } => {
                Outcome::Fresh { value: Won::new(balance), recorded: recorded.map(|resp| response(m, b, resp)) }
            }
            Charged::Replayed(resp) => Outcome::Replayed(response(m, b, resp)),
        })),
        Expect::Balance(n) => Observed::Balance(Ok(Won::new(*n))),
        Expect::History(r) => Observed::History(r.clone().map(|(entries, next)| LedgerPage {
            entries: entries.iter().map(|&e| entry(m, b, e)).collect(),
            next_before: next.map(|e| b.entry(Target::Known(e))),
        })),
        Expect::Settings(q) => Observed::Settings(Ok(queue_state(q))),
        Expect::QueueState(q) => Observed::QueueState(Ok(queue_state(q))),
        Expect::Moved(t) => Observed::Moved(*t),
        Expect::Join(r) => {
            Observed::Issue(r.clone().map(|(view, created)| IssuedToken { view: token_view(&view, b), created }))
        }
        Expect::TickRooms(ticks) => Observed::TickRooms(Ok(ticks
            .iter()
            .map(|t| {
                Ok(RoomTick {
                    room: world::room_id(t.room),
                    drew: t.drew.map(|(at, entrants)| DrawRecord { at, entrants, seed: m.draw_seed }),
                    admission: t.admission,
                    tokens_expired: t.tokens_expired,
                })
            })
            .collect())),
        Expect::RoomChange(v) => Observed::RoomChange(Ok(room_view(v, m))),
        Expect::RoomView(v) => Observed::RoomView(Ok(room_view(v, m))),
        Expect::Seats(r) => Observed::Seats(r.clone().map(|seats| {
            seats
                .iter()
                .map(|&s| SeatView { seat: world::seat_value(s), status: crate::model::view::seat_status(m, s) })
                .collect()
        })),
        Expect::TickRoomsPart(_) => unreachable!("a part of a rooms check is checked on its own"),
        Expect::Schedules(r) => Observed::Schedules(
            r.clone().map(|listed| listed.iter().map(|&i| crate::model::view::schedule_summary(m, i)).collect()),
        ),
    }
}

/// A room's view as expected.
#[must_use]
pub fn room_view(v: &RoomViewExpect, m: &Model) -> RoomView {
    RoomView {
        room: v.room.clone(),
        state: v.state,
        stats: QueueStats {
            waiting: v.waiting,
            active: v.active,
            issued_through: v.issued_through,
            abandoned: v.abandoned,
            cursor: QueueCursor {
                admitted_through: v.admitted_through,
                last_admission_at: v.last_admission_at,
                epoch: 0,
                draw: v.draw.map(|(at, entrants)| DrawRecord { at, entrants, seed: m.draw_seed }),
            },
            now: v.now,
        },
        next_admission_at: v.next_admission_at,
        estimated_wait_secs: v.estimated_wait_secs,
    }
}

/// Checks the service's answer to a step against the model's: binds what the step made, builds
/// the exact expected answer, compares. Returns the new bindings.
///
/// # Errors
/// A description of the difference.
pub fn check_step(expect: &Expect, m: &Model, b: &Bindings, observed: &Observed) -> Result<Bindings, String> {
    if let Expect::TickRoomsPart(part) = expect {
        return check_tick_part(*part, m, observed).map(|()| b.clone());
    }
    let b = bind_new(expect, observed, b)?;
    let wanted = materialize(expect, m, &b);
    if wanted == *observed {
        Ok(b)
    } else {
        Err(format!("expected {wanted:#?}\n     got {observed:#?}"))
    }
}

/// Checks one part of a rooms check (see `Model::phase`) against the check's answer.
fn check_tick_part(part: RoomTickPart, m: &Model, observed: &Observed) -> Result<(), String> {
    let r = match part {
        RoomTickPart::Drew(r, _) | RoomTickPart::Admission(r, _) | RoomTickPart::Expired(r, _) => r,
    };
    let tick = match observed {
        Observed::TickRooms(Ok(ticks)) => match ticks.get(r) {
            Some(Ok(t)) if t.room == world::room_id(r) => t,
            got => return Err(format!("expected room {r}'s {part:?}\n     got {got:#?}")),
        },
        _ => return Err(format!("expected room {r}'s {part:?}\n     got {observed:#?}")),
    };
    let same = match part {
        RoomTickPart::Drew(_, drew) => {
            tick.drew == drew.map(|(at, entrants)| DrawRecord { at, entrants, seed: m.draw_seed })
        }
        RoomTickPart::Admission(_, a) => tick.admission == a,
        RoomTickPart::Expired(_, n) => tick.tokens_expired == n,
    };
    if same {
        Ok(())
    } else {
        Err(format!("expected room {r}'s {part:?}\n     got {tick:#?}"))
    }
}

/// The seats of schedule `i`, in number order, as indices into [`SEATS`].
pub fn seats_of(i: usize) -> impl Iterator<Item = usize> {
    (0..SEATS.len()).filter(move |&s| SEATS[s].schedule == i)
}
