//! The concurrent variant: a fixed warm-up and a generated prefix run sequentially (checked
//! step by step like the sequential test), then several threads, released together by a
//! barrier, each run a few generated steps against the one store while the clock stands still.
//!
//! Afterwards:
//! - the invariants must hold on the store as its ports show it;
//! - the outcomes that do not depend on the order must add up: at most one successful hold per
//!   seat, one payment per token and per reservation, one effect per key, one admission tick
//!   that admits anybody, no more new tokens for a user than payments freed them;
//! - and the history must be *linearizable* against the model: some interleaving of the threads'
//!   steps must give, step by step, exactly the answers the threads got, and end in exactly the
//!   state the store shows. Each step is split into the atomic actions its use case is made of
//!   and only those are interleaved (each thread's in its own order): a protected call
//!   authorises, then acts; a payment passes its gate (token, key record), then runs its unit
//!   of work, then, with the queue apart (Redis), uses its token up; a sweep runs batch by
//!   batch, each taking any of the rows it may change (racing batches skip each other's
//!   rows), as many as it said (see [`Model::phase`]). A step that answered "nothing done, try
//!   later" (a transient store error, a busy admission lock, a key in flight) counts as one
//!   that changed nothing, as the contract promises.

use std::collections::hash_map::DefaultHasher;
use std::collections::{HashMap, HashSet};
use std::hash::{Hash, Hasher};
use std::sync::Barrier;

use domain::idempotency::Outcome;
use domain::queue::AdmissionOutcome;
use domain::service::IssuedToken;
use proptest::prelude::*;
use proptest::sample::select;
use proptest::strategy::Union;
use time::Duration;

use crate::model::op::{token_ref, Boundary, ClockMove, Op, ResRef, SeatRef, TokenRef, AMOUNTS};
use crate::model::reference::{Expect, Model, Step, Sweep, TokenTarget};
use crate::model::sequential::Sut;
use crate::model::sut::{check_step, execute, Bindings, Observed};
use crate::model::view::{compare, invariants, StoreView};
use crate::model::world::{self, KEYS, SEATS, USERS};
use crate::model::ModelStore;

/// Every user in line and admitted (two at the first tick, one a minute later), each able to
/// pay, user 0 holding two seats (its limit) and the others one each, so the racing steps
/// start from a store with something to race for: one free seat, four holds to pay, one token
/// with two holds it can pay only one of. Then users 0 and 1 join room `a`'s pre-queue, user 2
/// joins room `b`, which admits it, and the clock moves onto `a`'s opening: its draw is due,
/// and the racing steps' first rooms check makes it (unless the prefix did), with the joiners
/// absent by then unless a poll says otherwise.
pub const WARM_UP: [Op; 16] = [
    Op::Issue(0),
    Op::Issue(1),
    Op::Issue(2),
    Op::Admit,
    Op::Advance(ClockMove::By(Duration::seconds(60))),
    Op::Admit,
    Op::Charge(0, 20_000, None),
    Op::Reserve(TokenRef::Latest(0), SeatRef::Seat(0)),
    Op::Reserve(TokenRef::Latest(0), SeatRef::Seat(2)),
    Op::Reserve(TokenRef::Latest(1), SeatRef::Seat(3)),
    Op::Reserve(TokenRef::Latest(2), SeatRef::Seat(4)),
    Op::Join(0, 0),
    Op::Join(0, 1),
    Op::Join(1, 2),
    Op::TickRooms,
    Op::Advance(ClockMove::To(Boundary::RoomOpening, 0)),
];

/// Steps that race: holds on few seats, payments (one token for two holds, one hold from two
/// threads), keyed charges and payments, issues, admissions, sweeps, and reads. No clock moves.
pub fn racing_op() -> BoxedStrategy<Op> {
    let user = 0..USERS;
    let key = proptest::option::weighted(0.7, 0..KEYS.len());
    let seat = prop_oneof![3 => Just(1_usize), 1 => 0..SEATS.len()];
    let token = |u: usize| {
        prop_oneof![
            6 => Just(TokenRef::Latest(u)),
            2 => (0..world::ROOMS.len()).prop_map(move |r| TokenRef::InRoom(r, u)),
            1 => token_ref(),
        ]
    };
    let pay = (user.clone(), key.clone()).prop_flat_map(move |(u, k)| {
        let res = prop_oneof![1 => Just(ResRef::LatestOf(u)), 1 => (0..4_usize).prop_map(ResRef::Recent)];
        (token(u), res).prop_map(move |(t, r)| Op::Pay(t, r, k))
    });
    Union::new_weighted(vec![
        (6, user.clone().prop_map(Op::Issue).boxed()),
        (4, Just(Op::Admit).boxed()),
        (10, (user.clone(), seat).prop_map(|(u, s)| Op::Reserve(TokenRef::Latest(u), SeatRef::Seat(s))).boxed()),
        (
            3,
            (user.clone(), 0..world::ROOMS.len(), 5..SEATS.len())
                .prop_map(|(u, r, s)| Op::Reserve(TokenRef::InRoom(r, u), SeatRef::Seat(s)))
                .boxed(),
        ),
        (5, (0..world::ROOMS.len(), user.clone()).prop_map(|(r, u)| Op::Join(r, u)).boxed()),
        (4, (0..world::ROOMS.len(), user.clone()).prop_map(|(r, u)| Op::Poll(TokenRef::InRoom(r, u))).boxed()),
        (4, Just(Op::TickRooms).boxed()),
        (10, pay.boxed()),
        (6, (user.clone(), select(AMOUNTS.to_vec()), key).prop_map(|(u, a, k)| Op::Charge(u, a, k)).boxed()),
        (3, any::<bool>().prop_map(Op::Retry).boxed()),
        (2, Just(Op::ExpireTokens).boxed()),
        (2, Just(Op::ReleaseHolds).boxed()),
        (1, Just(Op::PurgeKeys).boxed()),
        (2, token_ref().prop_map(Op::Poll).boxed()),
        (1, user.clone().prop_map(Op::Balance).boxed()),
        (1, user.prop_map(|u| Op::History(u, None, None)).boxed()),
        (1, Just(Op::QueueState).boxed()),
    ])
    .boxed()
}

/// Runs one concurrent case: `prefix` after the warm-up, then `threads` at once.
///
/// # Panics
/// When the store diverges from the model, an invariant breaks, or no interleaving explains
/// what the threads saw.
pub fn run_case<H: ModelStore>(prefix: &[Op], threads: &[Vec<Op>]) {
    let mut sut = Sut::<H>::start();
    for op in WARM_UP.iter().chain(prefix) {
        sut.step(op);
        sut.check();
    }
    // Every thread's steps name what exists now; what the race makes is not named by it.
    // A thread's rooms checks are its own caller's: what one took from the service's memory,
    // it writes (see `Model::phase`).
    let steps: Vec<Vec<Step>> = threads
        .iter()
        .enumerate()
        .map(|(t, ops)| {
            ops.iter()
                .map(|op| match sut.model.resolve(op) {
                    Step::TickRooms(_) => Step::TickRooms(t + 1),
                    step => step,
                })
                .collect()
        })
        .collect();
    let barrier = Barrier::new(steps.len());
    let observed: Vec<Vec<Observed>> = std::thread::scope(|s| {
        let handles: Vec<_> = steps
            .iter()
            .map(|mine| {
                let (app, clock, bindings, barrier) = (&sut.app, &sut.clock, &sut.bindings, &barrier);
                s.spawn(move || {
                    barrier.wait();
                    mine.iter().map(|step| execute(app, clock, bindings, step)).collect::<Vec<_>>()
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().expect("a racing thread panicked")).collect()
    });
    let history: Vec<Vec<(Step, Observed)>> =
        steps.iter().zip(&observed).map(|(s, o)| s.iter().copied().zip(o.iter().cloned()).collect()).collect();
    let report = |what: &str| -> ! {
        let threads: Vec<String> = history
            .iter()
            .enumerate()
            .map(|(t, h)| {
                let lines: Vec<String> = h.iter().map(|(s, o)| format!("    {s:?}\n      -> {o:?}")).collect();
                format!("  thread {t}:\n{}", lines.join("\n"))
            })
            .collect();
        sut.fail(&format!("then these threads raced:\n{}\n{what}", threads.join("\n")))
    };

    // What the race made, whatever the order.
    let mut tokens = sut.bindings.tokens.clone();
    let mut room_tokens = sut.bindings.room_tokens.clone();
    let mut reservations = sut.bindings.reservations.clone();
    for o in observed.iter().flatten() {
        match o {
            Observed::Issue(Ok(i)) if i.created => {
                let value = &i.view.token.value;
                let line = match world::ROOMS.iter().position(|r| value.room().as_str() == r.id) {
                    Some(r) => &mut room_tokens[r],
                    None => &mut tokens,
                };
                if !line.contains(value) {
                    line.push(value.clone());
                }
            }
            Observed::Reserve(Ok(r)) if !reservations.contains(&r.id) => reservations.push(r.id),
            _ => {}
        }
    }
    let view = StoreView::read(&sut.app, &tokens, &room_tokens, &reservations);
    let mut bad = order_free(&history);
    bad.extend(sut.harness.store_problems());
    if !bad.is_empty() {
        report(&format!("violated:\n{}", bad.join("\n")));
    }
    match linearize(&sut.model, &sut.bindings, &history, &view, H::QUEUE_APART) {
        Ok((model, order)) => {
            cover_race(&sut.model, &history, &order, H::QUEUE_APART);
            let bad = invariants(&view, &model);
            if !bad.is_empty() {
                report(&format!("invariants violated:\n{}", bad.join("\n")));
            }
        }
        Err(why) => report(&why),
    }
}

/// The checks that hold whatever order the steps ran in.
fn order_free(history: &[Vec<(Step, Observed)>]) -> Vec<String> {
    let mut bad = Vec::new();
    let mut holds_per_seat: HashMap<_, usize> = HashMap::new();
    let mut pays_per_token: HashMap<TokenTarget, usize> = HashMap::new();
    let mut pays_per_reservation: HashMap<_, usize> = HashMap::new();
    let mut pays_per_user: HashMap<_, usize> = HashMap::new();
    let mut created_per_user: HashMap<_, usize> = HashMap::new();
    let mut effects_per_key: HashMap<(domain::ids::UserId, usize), usize> = HashMap::new();
    let mut ticks = 0;
    let mut room_ticks: HashMap<domain::room::RoomId, usize> = HashMap::new();
    let mut draws: HashMap<domain::room::RoomId, usize> = HashMap::new();
    for (step, o) in history.iter().flatten() {
        match (step, o) {
            (_, Observed::Reserve(Ok(r))) => *holds_per_seat.entry(r.seat_id).or_default() += 1,
            (Step::Pay { token, key, .. }, Observed::Pay(Ok(Outcome::Fresh { value, .. }))) => {
                *pays_per_token.entry(*token).or_default() += 1;
                *pays_per_reservation.entry(value.reservation_id).or_default() += 1;
                *pays_per_user.entry(value.user_id).or_default() += 1;
                if let Some(k) = key {
                    *effects_per_key.entry((value.user_id, *k)).or_default() += 1;
                }
            }
            (Step::Charge { user, key: Some(k), .. }, Observed::Charge(Ok(Outcome::Fresh { .. }))) => {
                *effects_per_key.entry((crate::model::world::user(*user), *k)).or_default() += 1;
            }
            (_, Observed::Issue(Ok(i))) if i.created => {
                *created_per_user.entry((i.view.token.user_id, i.view.token.value.room())).or_default() += 1;
            }
            (_, Observed::Admit(Ok(AdmissionOutcome::Admitted(n)))) if *n > 0 => ticks += 1,
            (_, Observed::TickRooms(Ok(rooms))) => {
                for t in rooms.iter().flatten() {
                    if t.admission.admitted() > 0 {
                        *room_ticks.entry(t.room.clone()).or_default() += 1;
                    }
                    if t.drew.is_some() {
                        *draws.entry(t.room.clone()).or_default() += 1;
                    }
                }
            }
            _ => {}
        }
    }
    for (seat, n) in holds_per_seat {
        if n > 1 {
            bad.push(format!("seat {seat} was held {n} times while the clock stood still"));
        }
    }
    for (token, n) in pays_per_token {
        if n > 1 {
            bad.push(format!("token {token:?} paid {n} times"));
        }
    }
    for (r, n) in pays_per_reservation {
        if n > 1 {
            bad.push(format!("reservation {r} was paid {n} times"));
        }
    }
    for ((user, k), n) in effects_per_key {
        if n > 1 {
            bad.push(format!("key {} of user {user} had {n} effects", KEYS[k]));
        }
    }
    for ((user, room), n) in created_per_user {
        if n > 1 + pays_per_user.get(&user).copied().unwrap_or(0) {
            bad.push(format!("user {user} was issued {n} new tokens in room {room}"));
        }
    }
    for (room, n) in room_ticks {
        if n > 1 {
            bad.push(format!("{n} checks of room {room} admitted somebody while the clock stood still"));
        }
    }
    for (room, n) in draws {
        if n > 1 {
            bad.push(format!("room {room} was drawn {n} times"));
        }
    }
    if ticks > 1 {
        bad.push(format!("{ticks} admission ticks admitted somebody while the clock stood still"));
    }
    bad
}

/// A racing answer as the model judges it: a WAITING token read while its line's order is
/// still to be drawn (`draw_at` set on both sides) with the `seq` the model gives it. A store
/// that renumbers a line in steps (Redis) may show a token its drawn `seq` before the draw is
/// recorded; no client sees a token's `seq`, and the position it would give is hidden until
/// the draw is recorded, so only that field is let go, only in that state.
fn mid_draw(expect: &Expect, observed: &Observed) -> Observed {
    let wanted = match expect {
        Expect::Join(Ok((v, _))) | Expect::Poll(Ok(v)) if v.draw_at.is_some() => v.seq,
        _ => return observed.clone(),
    };
    let mut observed = observed.clone();
    match &mut observed {
        Observed::Issue(Ok(IssuedToken { view, .. })) | Observed::Poll(Ok(view)) if view.draw_at.is_some() => {
            view.token.seq = wanted;
        }
        _ => {}
    }
    observed
}

/// Most search nodes before giving up (a few threads of a few steps need far fewer).
const MAX_NODES: usize = 2_000_000;

struct Search<'a> {
    history: &'a [Vec<(Step, Observed)>],
    view: &'a StoreView,
    queue_apart: bool,
    seen: HashSet<u64>,
    nodes: usize,
    /// The longest prefix explained, and why it went no further.
    deepest: (usize, String),
}

/// Where a thread is: the step, and the phase of it (see [`Model::phase`]; for a sweep, the
/// batch).
type At = (usize, usize);

/// One way an event can run: the model and bindings after it, and where its thread is next.
type Next = (Model, Bindings, At);

/// The batches of a sweep that changed `n` rows: full batches while a batch took a full one,
/// then the short one that ended it (unless the tick's cap of batches ended it).
fn batches(n: u64) -> Option<Vec<usize>> {
    let policy = world::policy();
    let (size, cap) = (usize::try_from(policy.sweep_batch).ok()?, usize::try_from(policy.sweep_batches_per_tick).ok()?);
    let n = usize::try_from(n).ok()?;
    let full = n / size;
    match full.cmp(&cap) {
        std::cmp::Ordering::Less => Some([vec![size; full], vec![n % size]].concat()),
        std::cmp::Ordering::Equal if n % size == 0 => Some(vec![size; cap]),
        _ => None,
    }
}

/// Every choice of `k` of `rows`.
fn choose<T: Copy>(rows: &[T], k: usize) -> Vec<Vec<T>> {
    if k == 0 {
        return vec![Vec::new()];
    }
    let mut out = Vec::new();
    for (i, first) in rows.iter().enumerate() {
        for mut rest in choose(&rows[i + 1..], k - 1) {
            rest.insert(0, *first);
            out.push(rest);
        }
    }
    out
}

impl Search<'_> {
    fn note(&mut self, depth: usize, why: String) {
        if depth >= self.deepest.0 {
            self.deepest = (depth, why);
        }
    }

    /// The ways the event a thread is at can run: each with the model and bindings after it
    /// and where the thread is next; or why the thread's answer cannot come from here.
    fn successors(&self, m: &Model, b: &Bindings, t: usize, (i, phase): At) -> Result<Vec<Next>, String> {
        let (step, observed) = &self.history[t][i];
        if observed.is_retry_later() {
            // Nothing was done: the whole step is one event that changes nothing.
            return Ok(vec![(m.clone(), b.clone(), (i + 1, 0))]);
        }
        if let (Some(kind), Observed::Count(Ok(n))) = (Sweep::of(step), observed) {
            // A sweep runs in batches, each one atomic, each taking some of the rows it may
            // change (racing batches skip each other's rows): any rows, as many as it said.
            let sizes = batches(*n).ok_or_else(|| format!("{step:?} cannot have swept {n} rows in one tick"))?;
            let rows = m.sweepable(kind);
            let k = sizes[phase];
            if rows.len() < k {
                return Err(format!("batch {phase} of {step:?} took {k} rows, only {} could be", rows.len()));
            }
            let next = if phase + 1 < sizes.len() { (i, phase + 1) } else { (i + 1, 0) };
            return Ok(choose(&rows, k)
                .into_iter()
                .map(|taken| {
                    let mut m2 = m.clone();
                    for row in taken {
                        m2.sweep(row);
                    }
                    (m2, b.clone(), next)
                })
                .collect());
        }
        if let (Step::TickRooms(_), Observed::TickRooms(Ok(ticks)), Some((r, 1))) =
            (step, observed, Model::tick_phase(phase))
        {
            if ticks.get(r).is_some_and(|t| t.as_ref().is_ok_and(|t| t.admission == AdmissionOutcome::Busy)) {
                // Another check held the room's admission: this one admitted nothing.
                return Ok(vec![(m.clone(), b.clone(), (i, phase + 1))]);
            }
        }
        let mut m2 = m.clone();
        let (decided, more) = m2.phase(step, phase, self.queue_apart);
        let b2 = match decided {
            Some(expect) => check_step(&expect, &m2, b, &mid_draw(&expect, observed))?,
            None => b.clone(),
        };
        Ok(vec![(m2, b2, if more { (i, phase + 1) } else { (i + 1, 0) })])
    }

    fn dfs(
        &mut self,
        m: &Model,
        b: &Bindings,
        at: &mut Vec<At>,
        order: &mut Vec<usize>,
    ) -> Option<(Model, Vec<usize>)> {
        self.nodes += 1;
        if self.nodes > MAX_NODES {
            return None;
        }
        let mut h = DefaultHasher::new();
        (&*at, m, b).hash(&mut h);
        if !self.seen.insert(h.finish()) {
            return None;
        }
        let depth = order.len();
        if at.iter().zip(self.history).all(|((i, _), h)| *i == h.len()) {
            return match compare(m, b, self.view) {
                Ok(_) => Some((m.clone(), order.clone())),
                Err(diffs) => {
                    self.note(
                        depth,
                        format!("order {order:?} explains every answer but not the final state:\n{}", diffs.join("\n")),
                    );
                    None
                }
            };
        }
        for t in 0..self.history.len() {
            if at[t].0 == self.history[t].len() {
                continue;
            }
            match self.successors(m, b, t, at[t]) {
                Ok(nexts) => {
                    for (m2, b2, next) in nexts {
                        let was = std::mem::replace(&mut at[t], next);
                        order.push(t);
                        if let Some(found) = self.dfs(&m2, &b2, at, order) {
                            return Some(found);
                        }
                        order.pop();
                        at[t] = was;
                    }
                }
                Err(why) => {
                    let step = self.history[t][at[t].0].0;
                    self.note(
                        depth,
                        format!("after events {order:?}, thread {t}'s {step:?} (phase {}): {why}", at[t].1),
                    );
                }
            }
        }
        None
    }
}

/// Finds an interleaving of the threads' steps (each step's phases at points of their own, in
/// order) that the model answers exactly as the threads saw, ending in the store's state;
/// returns the model after it.
fn linearize(
    m: &Model,
    b: &Bindings,
    history: &[Vec<(Step, Observed)>],
    view: &StoreView,
    queue_apart: bool,
) -> Result<(Model, Vec<usize>), String> {
    let mut search = Search { history, view, queue_apart, seen: HashSet::new(), nodes: 0, deepest: (0, String::new()) };
    let mut at = vec![(0, 0); history.len()];
    search.dfs(m, b, &mut at, &mut Vec::new()).ok_or_else(|| {
        let gave_up = if search.nodes > MAX_NODES { " (the search gave up)" } else { "" };
        format!(
            "no interleaving of the threads' steps explains their answers and the final state{gave_up}; \
             the deepest ({} events) failed: {}",
            search.deepest.0, search.deepest.1
        )
    })
}

/// Counts the racing steps' outcomes, in the order found, for the coverage report.
fn cover_race(m: &Model, history: &[Vec<(Step, Observed)>], order: &[usize], queue_apart: bool) {
    if std::env::var_os("MODEL_COVERAGE").is_none() {
        return;
    }
    let mut m = m.clone();
    let mut at = vec![(0, 0); history.len()];
    for &t in order {
        let (i, phase) = at[t];
        let (step, observed) = &history[t][i];
        if observed.is_retry_later() {
            crate::model::cover_label(format!("racing: retry later ({step:?})"));
            at[t] = (i + 1, 0);
            continue;
        }
        if let (Some(_), Observed::Count(Ok(n))) = (Sweep::of(step), observed) {
            let sizes = batches(*n).unwrap_or_default();
            if phase == 0 {
                crate::model::cover_label(format!("racing sweep: {}", n.min(&2)));
            }
            at[t] = if phase + 1 < sizes.len() { (i, phase + 1) } else { (i + 1, 0) };
            continue;
        }
        let (decided, more) = m.phase(step, phase, queue_apart);
        if let Some(e) = decided {
            crate::model::cover_label(format!("racing {}", e.label()));
        }
        at[t] = if more { (i, phase + 1) } else { (i + 1, 0) };
    }
}
