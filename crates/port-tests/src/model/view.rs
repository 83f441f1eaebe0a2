//! The store's state, read through its ports after a step ([`StoreView::read`]), compared with
//! the model's ([`compare`]) and checked against the service's invariants on its own
//! ([`invariants`]): the invariants hold whatever the model says, so a check that fails there
//! points at the store, not at the model.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use domain::account::{LedgerEntry, LedgerKind, LedgerQuery};
use domain::catalogue::{ScheduleSales, ScheduleSummary, SeatRecord, SeatStatus};
use domain::error::ReadTokenError;
use domain::idempotency::{IdempotencyKey, IdempotencyRecord};
use domain::ids::{ReservationId, ScheduleId, UserId};
use domain::money::Won;
use domain::queue::{QueueState, TokenStatus, TokenValue, TokenView};
use domain::reservation::{Reservation, ReservationStatus};
use domain::service::{RoomView, Ticketing};
use time::OffsetDateTime;

use crate::model::reference::Model;
use crate::model::sut::{self, seats_of, Bindings};
use crate::model::world::{self, CONCERTS, KEYS, ROOMS, SCHEDULES, SEATS, USERS};

/// Everything the ports show of the store, for every token and reservation the test knows.
#[derive(Debug, Clone)]
pub struct StoreView {
    /// Now, on the clock every port reads.
    pub now: OffsetDateTime,
    /// `read_token` of each known token value.
    pub tokens: Vec<(TokenValue, Result<TokenView, ReadTokenError>)>,
    /// The operator's view.
    pub queue: QueueState,
    /// Each known reservation as stored.
    pub reservations: Vec<(ReservationId, Option<Reservation>)>,
    /// Each schedule's seats with their claims.
    pub seat_maps: Vec<Option<Vec<SeatRecord>>>,
    /// Each concert's bookable schedules.
    pub schedules: Vec<Option<Vec<ScheduleSummary>>>,
    /// Each concert's sales.
    pub sales: Vec<Option<Vec<ScheduleSales>>>,
    /// Each room's known tokens, read through its line's port (a read through the use case
    /// would count as a sight), as their holders would see them.
    pub room_tokens: Vec<Vec<(TokenValue, Option<TokenView>)>>,
    /// Each room with its line.
    pub rooms: Vec<RoomView>,
    /// Each user's balance.
    pub balances: Vec<Won>,
    /// Each user's whole ledger, newest first.
    pub ledgers: Vec<Vec<LedgerEntry>>,
    /// Each user's record of each key.
    pub records: Vec<Vec<Option<IdempotencyRecord>>>,
}

fn ok<T, E: std::fmt::Debug>(what: &str, r: Result<T, E>) -> T {
    r.unwrap_or_else(|e| panic!("reading the store ({what}) failed: {e:?}"))
}

impl StoreView {
    /// Reads it all through the ports (and `read_token` through the use case).
    ///
    /// # Panics
    /// When the store fails a read.
    #[must_use]
    pub fn read(
        app: &Ticketing,
        tokens: &[TokenValue],
        room_tokens: &[Vec<TokenValue>],
        reservations: &[ReservationId],
    ) -> Self {
        let ports = app.ports();
        let now = ports.clock.now();
        let room_tokens = (0..ROOMS.len())
            .map(|r| {
                let id = world::room_id(r);
                let room = ok("room", app.room(&id)).expect("the world's rooms exist");
                let line = ports.lines.line(&id);
                room_tokens
                    .get(r)
                    .map(Vec::as_slice)
                    .unwrap_or_default()
                    .iter()
                    .map(|v| {
                        let found = ok("room token", line.find_with_cursor(v));
                        (v.clone(), found.map(|(t, cursor)| TokenView::in_room(t, &cursor, &room, now)))
                    })
                    .collect()
            })
            .collect();
        let rooms =
            (0..ROOMS.len()).map(|r| sut::one_room_line(ok("room view", app.room_view(&world::room_id(r))))).collect();
        let tokens = tokens.iter().map(|v| (v.clone(), app.read_token(v.as_str()))).collect();
        let reservations =
            reservations.iter().map(|id| (*id, ok("reservation", ports.reservations.find(*id)))).collect();
        let seat_maps = (0..SCHEDULES.len()).map(|i| ok("seats", ports.catalogue.seats(world::schedule(i)))).collect();
        let query = LedgerQuery { before: None, limit: 10_000 };
        Self {
            now,
            tokens,
            queue: sut::one_line(ok("queue state", app.queue_state())),
            reservations,
            seat_maps,
            schedules: (0..CONCERTS.len())
                .map(|c| ok("schedules", ports.catalogue.schedules(world::concert_of(c), now)))
                .collect(),
            sales: (0..CONCERTS.len()).map(|c| ok("sales", ports.catalogue.sales(world::concert_of(c), now))).collect(),
            room_tokens,
            rooms,
            balances: (0..USERS).map(|u| ok("balance", ports.accounts.balance(world::user(u)))).collect(),
            ledgers: (0..USERS)
                .map(|u| ok("ledger", ports.accounts.ledger(world::user(u), &query)).unwrap_or_default())
                .collect(),
            records: (0..USERS)
                .map(|u| {
                    KEYS.iter()
                        .map(|k| {
                            let key = IdempotencyKey::parse(k).expect("valid key");
                            ok("idempotency record", ports.idempotency.find(world::user(u), &key, now))
                        })
                        .collect()
                })
                .collect(),
        }
    }
}

/// Compares the store with the model, binding the ledger entries the store made since the last
/// read. Returns the bindings with every entry bound.
///
/// # Errors
/// Every difference found.
pub fn compare(m: &Model, b: &Bindings, v: &StoreView) -> Result<Bindings, Vec<String>> {
    let mut b = b.clone();
    let mut diffs = Vec::new();
    let mut diff = |what: String| diffs.push(what);
    if v.now != m.now {
        diff(format!("clock: model {} store {}", m.now, v.now));
    }

    // Ledgers first: they bind the entries the later comparisons name.
    b.entries.resize(m.ledger.len(), None);
    let mut bound_ids: BTreeSet<_> = b.entries.iter().flatten().copied().collect();
    for u in 0..USERS {
        let mine: Vec<usize> = (0..m.ledger.len()).rev().filter(|&e| m.ledger[e].user == u).collect();
        let got = &v.ledgers[u];
        if got.len() != mine.len() {
            diff(format!("user {u}'s ledger: model has {} entries, store {}: {got:#?}", mine.len(), got.len()));
            continue;
        }
        for (&e, g) in mine.iter().zip(got) {
            if b.entries[e].is_none() {
                if !bound_ids.insert(g.id) {
                    diff(format!("ledger entry id {} appears twice", g.id));
                }
                b.entries[e] = Some(g.id);
            }
            let wanted = sut::entry(m, &b, e);
            if wanted != *g {
                diff(format!("user {u}'s ledger entry {e}: expected {wanted:#?}\n got {g:#?}"));
            }
        }
        if v.balances[u] != Won::new(m.balances[u]) {
            diff(format!("user {u}'s balance: model {} store {}", m.balances[u], v.balances[u]));
        }
    }

    if v.tokens.len() != m.tokens.len() {
        diff(format!("the model knows {} tokens, the test read {}", m.tokens.len(), v.tokens.len()));
    }
    for i in 0..m.tokens.len().min(b.tokens.len()) {
        let Some((_, got)) = v.tokens.iter().find(|(value, _)| *value == b.tokens[i]) else {
            diff(format!("token seq {} was not read", i + 1));
            continue;
        };
        let wanted = Ok(sut::token_view(&m.view(i), &b));
        if wanted != *got {
            diff(format!("token seq {}: expected {wanted:#?}\n got {got:#?}", i + 1));
        }
    }
    let wanted = sut::queue_state(&m.queue_view());
    if wanted != v.queue {
        diff(format!("queue state: expected {wanted:#?}\n got {:#?}", v.queue));
    }

    if v.reservations.len() != m.reservations.len() {
        diff(format!("the model knows {} reservations, the test read {}", m.reservations.len(), v.reservations.len()));
    }
    for (r, res) in m.reservations.iter().enumerate().take(b.reservations.len()) {
        let Some((_, got)) = v.reservations.iter().find(|(id, _)| *id == b.reservations[r]) else {
            diff(format!("reservation {r} was not read"));
            continue;
        };
        let wanted = Some(sut::reservation(r, res, &b));
        if wanted != *got {
            diff(format!("reservation {r}: expected {wanted:#?}\n got {got:#?}"));
        }
    }
    for (i, got) in v.seat_maps.iter().enumerate() {
        let wanted: Vec<SeatRecord> = seats_of(i)
            .map(|s| SeatRecord { seat: world::seat_value(s), claim: m.claim(s).map(|r| sut::claim(m, &b, r)) })
            .collect();
        if got.as_ref() != Some(&wanted) {
            diff(format!("schedule {i}'s seats: expected {wanted:#?}\n got {got:#?}"));
        }
    }
    for c in 0..CONCERTS.len() {
        let (wanted_schedules, wanted_sales) = catalogue(m, c);
        if v.schedules[c].as_ref() != Some(&wanted_schedules) {
            diff(format!("concert {c}'s schedules: expected {wanted_schedules:#?}\n got {:#?}", v.schedules[c]));
        }
        if v.sales[c].as_ref() != Some(&wanted_sales) {
            diff(format!("concert {c}'s sales: expected {wanted_sales:#?}\n got {:#?}", v.sales[c]));
        }
    }

    for (r, room) in m.rooms.iter().enumerate() {
        let got = &v.room_tokens[r];
        if got.len() != room.tokens.len() {
            diff(format!("room {r}: the model knows {} tokens, the test read {}", room.tokens.len(), got.len()));
        }
        for i in 0..room.tokens.len().min(b.room_tokens[r].len()) {
            let Some((_, got)) = got.iter().find(|(value, _)| *value == b.room_tokens[r][i]) else {
                diff(format!("room {r}'s token {i} was not read"));
                continue;
            };
            let wanted = Some(sut::token_view(&m.room_view_of(r, i), &b));
            if wanted != *got {
                diff(format!("room {r}'s token {i}: expected {wanted:#?}\n got {got:#?}"));
            }
        }
        let wanted = sut::room_view(&m.room_view(r), m);
        if wanted != v.rooms[r] {
            diff(format!("room {r}: expected {wanted:#?}\n got {:#?}", v.rooms[r]));
        }
    }

    for (u, k) in Model::key_slots() {
        let wanted = m.records.get(&(u, k)).filter(|r| r.expires_at > m.now).map(|r| sut::record(m, &b, r.fp, r.resp));
        if wanted != v.records[u][k] {
            diff(format!("user {u}'s record of {}: expected {wanted:#?}\n got {:#?}", KEYS[k], v.records[u][k]));
        }
    }
    if diffs.is_empty() {
        Ok(b)
    } else {
        Err(diffs)
    }
}

/// Seat `s`'s status now, as the model has it.
#[must_use]
pub fn seat_status(m: &Model, s: usize) -> SeatStatus {
    match m.claim(s).map(|r| &m.reservations[r]) {
        Some(r) if r.status == ReservationStatus::Paid => SeatStatus::Sold,
        Some(r) if r.held_until > m.now => SeatStatus::Held,
        _ => SeatStatus::Available,
    }
}

/// Schedule `i` as a listing shows it now, as the model has it.
#[must_use]
pub fn schedule_summary(m: &Model, i: usize) -> ScheduleSummary {
    let (schedules, _) = catalogue(m, world::SCHEDULE_CONCERT[i]);
    schedules.into_iter().find(|s| s.id == world::schedule(i)).expect("a listed schedule is bookable")
}

/// Concert `c`'s bookable schedules and sales, as the model has them.
fn catalogue(m: &Model, c: usize) -> (Vec<ScheduleSummary>, Vec<ScheduleSales>) {
    let now = m.now;
    let mut order: Vec<usize> = (0..SCHEDULES.len()).filter(|&i| world::SCHEDULE_CONCERT[i] == c).collect();
    order.sort_by_key(|&i| m.starts_at(i));
    let status = |s: usize| match m.claim(s).map(|r| &m.reservations[r]) {
        Some(r) if r.status == ReservationStatus::Paid => SeatStatus::Sold,
        Some(r) if r.held_until > now => SeatStatus::Held,
        _ => SeatStatus::Available,
    };
    let mut schedules = Vec::new();
    let mut sales = Vec::new();
    for i in order {
        let total = u32::try_from(seats_of(i).count()).unwrap_or(u32::MAX);
        let with = |st: SeatStatus| u32::try_from(seats_of(i).filter(|&s| status(s) == st).count()).unwrap_or(0);
        if m.starts_at(i) > now {
            schedules.push(ScheduleSummary {
                id: world::schedule(i),
                concert_id: world::concert_of(c),
                starts_at: m.starts_at(i),
                total_seats: total,
                available_seats: with(SeatStatus::Available),
            });
        }
        let revenue = seats_of(i).filter(|&s| status(s) == SeatStatus::Sold).map(|s| SEATS[s].price).sum::<i64>();
        sales.push(ScheduleSales {
            schedule_id: world::schedule(i),
            starts_at: m.starts_at(i),
            total_seats: total,
            sold: with(SeatStatus::Sold),
            held: with(SeatStatus::Held),
            available: with(SeatStatus::Available),
            revenue: Won::new(revenue),
        });
    }
    (schedules, sales)
}

/// The service's invariants, checked on what the store shows (the model only says, for the
/// admission rule, which N and M were in force at each admission). Each string is one
/// violation.
#[must_use]
pub fn invariants(v: &StoreView, m: &Model) -> Vec<String> {
    let mut bad = Vec::new();
    let now = v.now;
    let stored: Vec<&Reservation> = v.reservations.iter().filter_map(|(_, r)| r.as_ref()).collect();

    // No seat with two live claims (and at most one stored claim: the seat map's).
    let mut by_seat: HashMap<_, Vec<&Reservation>> = HashMap::new();
    for r in &stored {
        by_seat.entry(r.seat_id).or_default().push(r);
    }
    for (seat, rs) in &by_seat {
        let live = rs.iter().filter(|r| r.occupies_seat_at(now)).count();
        let claims =
            rs.iter().filter(|r| matches!(r.status, ReservationStatus::Held | ReservationStatus::Paid)).count();
        if live > 1 || claims > 1 {
            bad.push(format!("seat {seat} has {live} live claims and {claims} stored claims"));
        }
    }
    for map in v.seat_maps.iter().flatten() {
        for rec in map {
            let live = by_seat.get(&rec.seat.id).and_then(|rs| {
                rs.iter().find(|r| matches!(r.status, ReservationStatus::Held | ReservationStatus::Paid))
            });
            if rec.claim.map(|c| c.reservation_id) != live.map(|r| r.id) {
                bad.push(format!("seat {}'s map claim {:?} is not its stored claim", rec.seat.number, rec.claim));
            }
        }
    }

    // Balance = sum of the ledger, never negative, each entry following the last.
    let mut payment_entries = Vec::new();
    for u in 0..USERS {
        let ledger = &v.ledgers[u];
        let sum: i64 = ledger.iter().map(|e| e.amount.get()).sum();
        if v.balances[u].get() != sum {
            bad.push(format!("user {u}'s balance {} is not its ledger's sum {sum}", v.balances[u]));
        }
        if v.balances[u] < Won::ZERO {
            bad.push(format!("user {u}'s balance {} is negative", v.balances[u]));
        }
        let mut running = 0_i64;
        for e in ledger.iter().rev() {
            running += e.amount.get();
            if e.balance_after.get() != running || e.balance_after < Won::ZERO {
                bad.push(format!("user {u}'s entry {} says {} after, the sum is {running}", e.id, e.balance_after));
            }
            let sign_ok = match e.kind {
                LedgerKind::Charge => e.amount > Won::ZERO && e.payment_id.is_none(),
                LedgerKind::Payment => e.amount < Won::ZERO && e.payment_id.is_some(),
            };
            if !sign_ok {
                bad.push(format!("user {u}'s entry {} is malformed: {e:?}", e.id));
            }
            if e.kind == LedgerKind::Payment {
                payment_entries.push(e);
            }
        }
    }

    // One payment per PAID reservation, none for another; amount = price; payer = holder.
    let mut per_reservation: HashMap<Option<ReservationId>, usize> = HashMap::new();
    let mut payment_ids = BTreeSet::new();
    for e in &payment_entries {
        *per_reservation.entry(e.reservation_id).or_default() += 1;
        if !payment_ids.insert(e.payment_id) {
            bad.push(format!("payment {:?} has two ledger entries", e.payment_id));
        }
        match stored.iter().find(|r| Some(r.id) == e.reservation_id) {
            Some(r) if r.status == ReservationStatus::Paid => {
                if r.price.get() != -e.amount.get() || r.user_id != e.user_id || r.paid_at != Some(e.at) {
                    bad.push(format!("payment entry {} does not match reservation {}", e.id, r.id));
                }
            }
            Some(r) => bad.push(format!("payment entry {} pays reservation {} in status {}", e.id, r.id, r.status)),
            None => bad.push(format!("payment entry {} pays an unknown reservation {:?}", e.id, e.reservation_id)),
        }
    }
    for r in stored.iter().filter(|r| r.status == ReservationStatus::Paid) {
        let n = per_reservation.get(&Some(r.id)).copied().unwrap_or(0);
        if n != 1 {
            bad.push(format!("PAID reservation {} has {n} payments", r.id));
        }
    }

    // Tokens: seq gapless, one live token per user, WAITING positions exactly 1..=waiting.
    let views: Vec<&TokenView> = v.tokens.iter().filter_map(|(_, r)| r.as_ref().ok()).collect();
    if views.len() != v.tokens.len() {
        bad.push("a known token does not read".to_owned());
    }
    let mut seqs: Vec<i64> = views.iter().map(|t| t.token.seq).collect();
    seqs.sort_unstable();
    if seqs.iter().enumerate().any(|(i, s)| *s != i64::try_from(i + 1).unwrap_or(0))
        || v.queue.stats.issued_through != i64::try_from(seqs.len()).unwrap_or(0)
    {
        bad.push(format!("token seqs are not 1..={}: {seqs:?}", v.queue.stats.issued_through));
    }
    let mut live_per_user: HashMap<UserId, usize> = HashMap::new();
    for t in views.iter().filter(|t| t.status != TokenStatus::Expired) {
        *live_per_user.entry(t.token.user_id).or_default() += 1;
    }
    for (user, n) in live_per_user {
        if n > 1 {
            bad.push(format!("user {user} has {n} live tokens"));
        }
    }
    let mut waiting: Vec<&&TokenView> = views.iter().filter(|t| t.status == TokenStatus::Waiting).collect();
    waiting.sort_by_key(|t| t.token.seq);
    let positions: Vec<i64> = waiting.iter().map(|t| t.position).collect();
    let gapless: Vec<i64> = (1..=i64::try_from(positions.len()).unwrap_or(0)).collect();
    if positions != gapless || v.queue.stats.waiting != u64::try_from(positions.len()).unwrap_or(0) {
        bad.push(format!("WAITING positions {positions:?} are not 1..={} in seq order", v.queue.stats.waiting));
    }

    // At most one payment per token: every payment used up a token of its payer at its time,
    // a different one for each.
    let mut used: BTreeMap<(UserId, OffsetDateTime), usize> = BTreeMap::new();
    let in_rooms = v.room_tokens.iter().flatten().filter_map(|(_, t)| t.as_ref());
    for t in views.iter().copied().chain(in_rooms) {
        if let (TokenStatus::Expired, Some(_), Some(at)) = (t.token.status, t.token.activated_at, t.token.expires_at) {
            *used.entry((t.token.user_id, at)).or_default() += 1;
        }
    }
    let mut paid: BTreeMap<(UserId, OffsetDateTime), usize> = BTreeMap::new();
    for e in &payment_entries {
        *paid.entry((e.user_id, e.at)).or_default() += 1;
    }
    for (k, n) in paid {
        if used.get(&k).copied().unwrap_or(0) < n {
            bad.push(format!("{n} payments of user {} at {} used up fewer tokens", k.0, k.1));
        }
    }

    // Admitted at most N per tick, ticks at least M apart.
    let mut activations: BTreeMap<OffsetDateTime, u64> = BTreeMap::new();
    for t in &views {
        if let Some(at) = t.token.activated_at {
            *activations.entry(at).or_default() += 1;
        }
    }
    let mut last: Option<OffsetDateTime> = None;
    for (at, n) in activations {
        match m.admissions.iter().find(|a| a.at == at) {
            Some(a) => {
                if n > u64::from(a.batch) {
                    bad.push(format!("{n} tokens admitted at {at}, N was {}", a.batch));
                }
                if last.is_some_and(|l| at - l < a.interval) {
                    bad.push(format!("an admission at {at} came less than {} after the last", a.interval));
                }
            }
            None => bad.push(format!("{n} tokens were admitted at {at}, when no admission ran")),
        }
        last = Some(at);
    }

    // Rooms: each line on its own (seqs gapless, WAITING positions exactly 1..=waiting in seq
    // order once the order is known, one live token per user, at most N per tick and ticks at
    // least M apart), and a token
    // used up by a payment only ever by a payment of its own room's concert.
    let room_of_reservation = |id: Option<ReservationId>| {
        stored
            .iter()
            .find(|r| Some(r.id) == id)
            .and_then(|r| (0..SCHEDULES.len()).find(|&i| world::schedule(i) == r.schedule_id))
            .map(world::room_of_schedule)
    };
    let mut used_up: Vec<(Option<usize>, &TokenView)> = views
        .iter()
        .filter(|t| t.expired_reason == Some(domain::queue::ExpiredReason::Paid))
        .map(|t| (None, *t))
        .collect();
    for (r, got) in v.room_tokens.iter().enumerate() {
        let id = ROOMS[r].id;
        let views: Vec<&TokenView> = got.iter().filter_map(|(_, t)| t.as_ref()).collect();
        if views.len() != got.len() {
            bad.push(format!("a known token of room {id} is not found"));
        }
        let stats = &v.rooms[r].stats;
        let mut seqs: Vec<i64> = views.iter().map(|t| t.token.seq).collect();
        seqs.sort_unstable();
        if seqs.iter().enumerate().any(|(i, s)| *s != i64::try_from(i + 1).unwrap_or(0))
            || stats.issued_through != i64::try_from(seqs.len()).unwrap_or(0)
        {
            bad.push(format!("room {id}'s seqs are not 1..={}: {seqs:?}", stats.issued_through));
        }
        let mut live: HashMap<UserId, usize> = HashMap::new();
        for t in views.iter().filter(|t| t.status != TokenStatus::Expired) {
            *live.entry(t.token.user_id).or_default() += 1;
        }
        for (user, n) in live {
            if n > 1 {
                bad.push(format!("user {user} has {n} live tokens in room {id}"));
            }
        }
        let mut waiting: Vec<&&TokenView> = views.iter().filter(|t| t.status == TokenStatus::Waiting).collect();
        waiting.sort_by_key(|t| t.token.seq);
        let positions: Vec<i64> = waiting.iter().map(|t| t.position).collect();
        let pending = waiting.iter().any(|t| t.draw_at.is_some());
        let wanted: Vec<i64> = if pending {
            vec![0; positions.len()]
        } else {
            (1..=i64::try_from(positions.len()).unwrap_or(0)).collect()
        };
        if positions != wanted || stats.waiting != u64::try_from(positions.len()).unwrap_or(0) {
            bad.push(format!(
                "room {id}'s WAITING positions {positions:?} are not {wanted:?} (waiting {})",
                stats.waiting
            ));
        }
        let mut activations: BTreeMap<OffsetDateTime, u64> = BTreeMap::new();
        for t in &views {
            if let Some(at) = t.token.activated_at {
                *activations.entry(at).or_default() += 1;
            }
        }
        let mut last: Option<OffsetDateTime> = None;
        for (at, n) in activations {
            match m.rooms[r].admissions.iter().find(|a| a.at == at) {
                Some(a) => {
                    if n > u64::from(a.batch) {
                        bad.push(format!("{n} tokens admitted in room {id} at {at}, N was {}", a.batch));
                    }
                    if last.is_some_and(|l| at - l < a.interval) {
                        bad.push(format!(
                            "an admission in room {id} at {at} came less than {} after the last",
                            a.interval
                        ));
                    }
                }
                None => bad.push(format!("{n} tokens were admitted in room {id} at {at}, when no admission ran")),
            }
            last = Some(at);
        }
        used_up.extend(
            views
                .iter()
                .filter(|t| t.expired_reason == Some(domain::queue::ExpiredReason::Paid))
                .map(|t| (Some(r), *t)),
        );
    }
    for (room, t) in used_up {
        let paid_here = payment_entries.iter().any(|e| {
            e.user_id == t.token.user_id
                && Some(e.at) == t.token.expires_at
                && room_of_reservation(e.reservation_id) == Some(room)
        });
        if !paid_here {
            bad.push(format!(
                "token seq {} of room {} was used up with no payment of its room's concert",
                t.token.seq,
                room.map_or("main", |r| ROOMS[r].id)
            ));
        }
    }

    // The hold limit, and the catalogue's counts agree with the seat maps.
    let mut holds: HashMap<UserId, u32> = HashMap::new();
    for r in stored.iter().filter(|r| r.status_at(now) == ReservationStatus::Held) {
        *holds.entry(r.user_id).or_default() += 1;
    }
    let max = world::policy().max_holds_per_user;
    for (user, n) in holds {
        if n > max {
            bad.push(format!("user {user} has {n} live holds, more than {max}"));
        }
    }
    for (i, map) in v.seat_maps.iter().enumerate() {
        let Some(map) = map else { continue };
        let count = |s: SeatStatus| u32::try_from(map.iter().filter(|r| r.status_at(now) == s).count()).unwrap_or(0);
        let id: ScheduleId = world::schedule(i);
        if let Some(s) = v.sales.iter().flatten().flatten().find(|s| s.schedule_id == id) {
            let counts = (s.sold, s.held, s.available);
            if counts != (count(SeatStatus::Sold), count(SeatStatus::Held), count(SeatStatus::Available)) {
                bad.push(format!("schedule {i}'s sales {counts:?} disagree with its seat map"));
            }
        }
        if let Some(s) = v.schedules.iter().flatten().flatten().find(|s| s.id == id) {
            if s.available_seats != count(SeatStatus::Available) {
                bad.push(format!(
                    "schedule {i} lists {} available, its map {}",
                    s.available_seats,
                    count(SeatStatus::Available)
                ));
            }
        }
    }
    bad
}
