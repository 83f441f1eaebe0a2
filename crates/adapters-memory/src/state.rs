//! The data of a [`crate::MemoryStore`] and what each port call does to it. Every method here
//! runs with the store's lock held, so each is atomic and serialised against all others. The
//! rules themselves are the domain's functions (`status_at`, `occupies_seat_at`,
//! `may_hold_another`, `credit_fits`, the admission policy), called rather than restated; the
//! one rule restated here (a schedule is bookable) names the function it mirrors.
//!
//! Every mutating method checks everything that can fail *before* its first write, so an
//! `Err` always leaves the state as it was: that is the whole of this store's rollback.

use std::collections::{BTreeMap, HashMap, HashSet};

use domain::account::{CreditOutcome, CreditRequest, LedgerEntry, LedgerKind, LedgerQuery};
use domain::audit::{AuditEntry, OperatorAction, OperatorNote};
use domain::catalogue::{
    AddSchedule, Concert, NewConcert, NewSchedule, ScheduleSales, ScheduleSummary, Seat, SeatClaim, SeatRecord,
    SeatStatus,
};
use domain::error::PayError;
use domain::idempotency::{Claimed, Effect, IdempotencyGuard, IdempotencyKey, IdempotencyRecord};
use domain::ids::{ConcertId, PaymentId, ReservationId, ScheduleId, SeatId, UserId};
use domain::money::{credit_fits, Won};
use domain::payment::{Payment, PaymentFacts, PaymentRequest, Settlement};
use domain::ports::{ChangeRoom, Decide, StoreError};
use domain::queue::{QueueSettings, QueueToken, SettingsPatch, TokenValue};
use domain::reservation::{may_hold_another, HoldOutcome, HoldRequest, Reservation, ReservationStatus};
use domain::room::{CreateRoomOutcome, Room, RoomId, UpdateRoomOutcome};
use time::OffsetDateTime;

use crate::line::Line;

/// A schedule as stored: the seats are kept in number order for the seat map.
#[derive(Debug, Clone)]
struct ScheduleRow {
    concert_id: ConcertId,
    starts_at: OffsetDateTime,
    seats: Vec<SeatId>,
}

/// A recorded keyed request, kept until `expires_at`.
#[derive(Debug, Clone)]
struct StoredRecord {
    record: IdempotencyRecord,
    expires_at: OffsetDateTime,
}

/// Everything the store holds.
#[derive(Debug, Default)]
pub(crate) struct State {
    /// The failure switch: while set, every port call fails with it and changes nothing.
    pub(crate) failure: Option<StoreError>,

    settings: QueueSettings,
    /// The operator log, oldest first (`seq` 1, 2, ...).
    audit: Vec<AuditEntry>,

    /// `main`'s line.
    main: Line,
    /// The lines of the other rooms, created by their first use.
    lines: HashMap<RoomId, Line>,
    /// The rooms other than `main`.
    rooms: BTreeMap<RoomId, Room>,

    concerts: HashMap<ConcertId, Concert>,
    schedules: HashMap<ScheduleId, ScheduleRow>,
    seats: HashMap<SeatId, Seat>,

    reservations: HashMap<ReservationId, Reservation>,
    reservations_of: HashMap<UserId, Vec<ReservationId>>,
    /// The HELD or PAID reservation occupying each seat. A HELD one may have lapsed; EXPIRED
    /// ones are removed, so a seat has at most one entry (the second line behind the hold
    /// rule, like PostgreSQL's unique partial index).
    claims: HashMap<SeatId, ReservationId>,

    balances: HashMap<UserId, Won>,
    /// Each user's ledger, oldest first.
    ledgers: HashMap<UserId, Vec<LedgerEntry>>,
    payments: HashMap<PaymentId, Payment>,
    /// The reservation each payment paid and the token that paid it: at most one payment per
    /// reservation and per token (the second line behind `payment::settle`).
    paid_reservations: HashSet<ReservationId>,
    paid_tokens: HashSet<TokenValue>,

    records: HashMap<(UserId, IdempotencyKey), StoredRecord>,
}

fn internal(what: impl Into<String>) -> StoreError {
    StoreError::Internal(what.into())
}

fn as_u64(n: usize) -> u64 {
    u64::try_from(n).unwrap_or(u64::MAX)
}

fn as_u32(n: usize) -> u32 {
    u32::try_from(n).unwrap_or(u32::MAX)
}

fn limit(n: u32) -> usize {
    usize::try_from(n).unwrap_or(usize::MAX)
}

/// Whether seats of a schedule starting at `starts_at` may be reserved at `now`: restates
/// [`ScheduleSummary::is_bookable_at`] for a stored row.
fn bookable(starts_at: OffsetDateTime, now: OffsetDateTime) -> bool {
    starts_at > now
}

impl State {
    /// An empty store whose settings start as `settings`.
    pub(crate) fn new(settings: QueueSettings) -> Self {
        Self { settings, ..Self::default() }
    }

    /// `Err` while the failure switch is set.
    pub(crate) fn check(&self) -> Result<(), StoreError> {
        self.failure.as_ref().map_or(Ok(()), |e| Err(e.clone()))
    }

    // ---- queue ---------------------------------------------------------------------------------

    /// The line of `room`.
    pub(crate) fn line(&self, room: &RoomId) -> Option<&Line> {
        if room.is_main() {
            Some(&self.main)
        } else {
            self.lines.get(room)
        }
    }

    /// The line of `room`, made on first use.
    pub(crate) fn line_mut(&mut self, room: &RoomId) -> &mut Line {
        if room.is_main() {
            &mut self.main
        } else {
            self.lines.entry(room.clone()).or_default()
        }
    }

    fn find_token(&self, value: &TokenValue) -> Option<QueueToken> {
        self.line(&value.room()).and_then(|line| line.find_token(value))
    }

    fn use_up(&mut self, value: &TokenValue, at: OffsetDateTime) {
        self.line_mut(&value.room()).use_up(value, at);
    }

    // ---- settings ------------------------------------------------------------------------------

    pub(crate) fn settings(&self) -> QueueSettings {
        self.settings
    }

    pub(crate) fn update_settings(
        &mut self,
        patch: &SettingsPatch,
        note: Option<&OperatorNote>,
    ) -> (QueueSettings, QueueSettings) {
        let before = self.settings;
        self.settings = patch.apply(before);
        if let Some(note) = note {
            self.log(OperatorAction::queue_update(note, &before, &self.settings));
        }
        (before, self.settings)
    }

    // ---- rooms --------------------------------------------------------------------------------

    pub(crate) fn rooms(&self) -> Vec<Room> {
        self.rooms.values().cloned().collect()
    }

    /// The first concert of `concerts` that does not exist, or that a room other than `except`
    /// lists.
    fn concert_conflict(&self, concerts: &[ConcertId], except: &RoomId) -> Option<Result<ConcertId, ConcertId>> {
        concerts.iter().find_map(|c| {
            if !self.concerts.contains_key(c) {
                return Some(Err(*c));
            }
            let taken = self.rooms.values().any(|r| r.id != *except && r.concerts.contains(c));
            taken.then_some(Ok(*c))
        })
    }

    pub(crate) fn create_room(&mut self, room: &Room, note: Option<&OperatorNote>) -> CreateRoomOutcome {
        if self.rooms.contains_key(&room.id) {
            return CreateRoomOutcome::Exists;
        }
        match self.concert_conflict(&room.concerts, &room.id) {
            Some(Ok(c)) => return CreateRoomOutcome::ConcertTaken(c),
            Some(Err(c)) => return CreateRoomOutcome::UnknownConcert(c),
            None => {}
        }
        self.rooms.insert(room.id.clone(), room.clone());
        if let Some(note) = note {
            self.log(OperatorAction::room_created(note, room));
        }
        CreateRoomOutcome::Created
    }

    pub(crate) fn update_room(
        &mut self,
        id: &RoomId,
        change: &mut ChangeRoom<'_>,
        note: Option<&OperatorNote>,
    ) -> UpdateRoomOutcome {
        let Some(before) = self.rooms.get(id).cloned() else { return UpdateRoomOutcome::NotFound };
        let after = match change(&before) {
            Ok(after) => after,
            Err(e) => return UpdateRoomOutcome::Refused(e),
        };
        match self.concert_conflict(&after.concerts, id) {
            Some(Ok(c)) => return UpdateRoomOutcome::ConcertTaken(c),
            Some(Err(c)) => return UpdateRoomOutcome::UnknownConcert(c),
            None => {}
        }
        self.rooms.insert(id.clone(), after.clone());
        if let Some(note) = note {
            self.log(OperatorAction::room_updated(note, &before, &after));
        }
        UpdateRoomOutcome::Updated { before: Box::new(before), after: Box::new(after) }
    }

    pub(crate) fn concert_of(&self, schedule: ScheduleId) -> Option<ConcertId> {
        self.schedules.get(&schedule).map(|row| row.concert_id)
    }

    // ---- the operator log ----------------------------------------------------------------------

    fn log(&mut self, action: OperatorAction) {
        let seq = self.audit.last().map_or(1, |e| e.seq + 1);
        self.audit.push(AuditEntry { seq, action });
    }

    pub(crate) fn audit_log(&self, before: Option<i64>, limit: u32) -> Vec<AuditEntry> {
        let older = self.audit.iter().rev().filter(|e| before.is_none_or(|b| e.seq < b));
        older.take(usize::try_from(limit).unwrap_or(usize::MAX)).cloned().collect()
    }

    // ---- catalogue -----------------------------------------------------------------------------

    pub(crate) fn concerts(&self) -> Vec<Concert> {
        let mut list: Vec<Concert> = self.concerts.values().cloned().collect();
        list.sort_by(|a, b| a.title.cmp(&b.title).then(a.id.cmp(&b.id)));
        list
    }

    /// The reservation occupying `seat`, if any, HELD (maybe lapsed) or PAID.
    fn claim(&self, seat: SeatId) -> Option<&Reservation> {
        self.claims.get(&seat).and_then(|id| self.reservations.get(id))
    }

    fn record(&self, seat: &Seat) -> SeatRecord {
        SeatRecord { seat: seat.clone(), claim: self.claim(seat.id).map(SeatClaim::of) }
    }

    fn records<'a>(&'a self, row: &'a ScheduleRow) -> impl Iterator<Item = SeatRecord> + 'a {
        row.seats.iter().filter_map(|id| self.seats.get(id)).map(|seat| self.record(seat))
    }

    /// The schedules of `concert`, soonest first; `None` for an unknown concert.
    fn schedules_of(&self, concert: ConcertId) -> Option<Vec<(ScheduleId, &ScheduleRow)>> {
        if !self.concerts.contains_key(&concert) {
            return None;
        }
        let mut list: Vec<(ScheduleId, &ScheduleRow)> =
            self.schedules.iter().filter(|(_, row)| row.concert_id == concert).map(|(id, row)| (*id, row)).collect();
        list.sort_by(|a, b| a.1.starts_at.cmp(&b.1.starts_at).then(a.0.cmp(&b.0)));
        Some(list)
    }

    pub(crate) fn schedules(&self, concert: ConcertId, now: OffsetDateTime) -> Option<Vec<ScheduleSummary>> {
        let list = self
            .schedules_of(concert)?
            .into_iter()
            .map(|(id, row)| {
                let available = self.records(row).filter(|r| r.status_at(now) == SeatStatus::Available).count();
                ScheduleSummary {
                    id,
                    concert_id: concert,
                    starts_at: row.starts_at,
                    total_seats: as_u32(row.seats.len()),
                    available_seats: as_u32(available),
                }
            })
            .filter(|s| s.is_bookable_at(now))
            .collect();
        Some(list)
    }

    pub(crate) fn seats(&self, schedule: ScheduleId) -> Option<Vec<SeatRecord>> {
        let row = self.schedules.get(&schedule)?;
        Some(self.records(row).collect())
    }

    /// Why `schedule` cannot be added as it is (ids taken, seats not its own), if it cannot.
    fn schedule_conflict(&self, schedule: &NewSchedule, seen: &mut HashSet<SeatId>) -> Option<String> {
        if self.schedules.contains_key(&schedule.id) {
            return Some(format!("schedule id {} already taken", schedule.id));
        }
        let mut numbers = HashSet::new();
        for seat in &schedule.seats {
            if seat.schedule_id != schedule.id {
                return Some(format!("seat {} does not belong to schedule {}", seat.id, schedule.id));
            }
            if self.seats.contains_key(&seat.id) || !seen.insert(seat.id) {
                return Some(format!("seat id {} already taken", seat.id));
            }
            if !numbers.insert(seat.number) {
                return Some(format!("seat number {} twice in schedule {}", seat.number, schedule.id));
            }
        }
        None
    }

    fn insert_schedule(&mut self, schedule: &NewSchedule) {
        let mut seats: Vec<&Seat> = schedule.seats.iter().collect();
        seats.sort_by_key(|s| s.number);
        let row = ScheduleRow {
            concert_id: schedule.concert_id,
            starts_at: schedule.starts_at,
            seats: seats.iter().map(|s| s.id).collect(),
        };
        for seat in seats {
            self.seats.insert(seat.id, seat.clone());
        }
        self.schedules.insert(schedule.id, row);
    }

    pub(crate) fn create_concert(
        &mut self,
        concert: &NewConcert,
        note: Option<&OperatorNote>,
    ) -> Result<bool, StoreError> {
        let id = concert.concert.id;
        if self.concerts.contains_key(&id) {
            return Ok(false);
        }
        let mut seen_seats = HashSet::new();
        let mut seen_schedules = HashSet::new();
        for schedule in &concert.schedules {
            if schedule.concert_id != id {
                return Err(internal(format!("schedule {} does not belong to concert {id}", schedule.id)));
            }
            if !seen_schedules.insert(schedule.id) {
                return Err(internal(format!("schedule id {} twice in one concert", schedule.id)));
            }
            if let Some(conflict) = self.schedule_conflict(schedule, &mut seen_seats) {
                return Err(internal(conflict));
            }
        }
        self.concerts.insert(id, concert.concert.clone());
        for schedule in &concert.schedules {
            self.insert_schedule(schedule);
        }
        if let Some(note) = note {
            self.log(OperatorAction::concert_created(note, concert));
        }
        Ok(true)
    }

    pub(crate) fn add_schedule(
        &mut self,
        schedule: &NewSchedule,
        note: Option<&OperatorNote>,
    ) -> Result<AddSchedule, StoreError> {
        if !self.concerts.contains_key(&schedule.concert_id) {
            return Ok(AddSchedule::NoSuchConcert);
        }
        if self.schedules.contains_key(&schedule.id) {
            return Ok(AddSchedule::AlreadyExists);
        }
        if let Some(conflict) = self.schedule_conflict(schedule, &mut HashSet::new()) {
            return Err(internal(conflict));
        }
        self.insert_schedule(schedule);
        if let Some(note) = note {
            self.log(OperatorAction::schedule_added(note, schedule));
        }
        Ok(AddSchedule::Added)
    }

    pub(crate) fn sales(&self, concert: ConcertId, now: OffsetDateTime) -> Option<Vec<ScheduleSales>> {
        let list = self
            .schedules_of(concert)?
            .into_iter()
            .map(|(id, row)| {
                let mut sales = ScheduleSales {
                    schedule_id: id,
                    starts_at: row.starts_at,
                    total_seats: as_u32(row.seats.len()),
                    sold: 0,
                    held: 0,
                    available: 0,
                    revenue: Won::ZERO,
                };
                for record in self.records(row) {
                    match record.status_at(now) {
                        SeatStatus::Sold => {
                            sales.sold += 1;
                            let price = self.claim(record.seat.id).map_or(Won::ZERO, |r| r.price);
                            sales.revenue = sales.revenue.checked_add(price).unwrap_or(sales.revenue);
                        }
                        SeatStatus::Held => sales.held += 1,
                        SeatStatus::Available => sales.available += 1,
                    }
                }
                sales
            })
            .collect();
        Some(list)
    }

    // ---- reservations --------------------------------------------------------------------------

    pub(crate) fn hold(&mut self, req: &HoldRequest) -> Result<HoldOutcome, StoreError> {
        let Some(seat) = self.seats.get(&req.seat_id).filter(|s| s.schedule_id == req.schedule_id).cloned() else {
            return Ok(HoldOutcome::NoSuchSeat);
        };
        if !self.schedules.get(&req.schedule_id).is_some_and(|row| bookable(row.starts_at, req.now)) {
            return Ok(HoldOutcome::NoSuchSeat);
        }
        if self.claim(seat.id).is_some_and(|r| r.occupies_seat_at(req.now)) {
            return Ok(HoldOutcome::SeatTaken);
        }
        let live_holds = self
            .reservations_of
            .get(&req.user_id)
            .into_iter()
            .flatten()
            .filter_map(|id| self.reservations.get(id))
            .filter(|r| r.status_at(req.now) == ReservationStatus::Held)
            .count();
        if !may_hold_another(as_u32(live_holds), req.max_live_holds) {
            return Ok(HoldOutcome::HoldLimit);
        }
        if self.reservations.contains_key(&req.reservation_id) {
            return Err(internal("duplicate reservation id"));
        }
        // Whatever still claims the seat is a lapsed hold: close it so it reads EXPIRED.
        if let Some(old) = self.claims.remove(&seat.id).and_then(|id| self.reservations.get_mut(&id)) {
            old.status = ReservationStatus::Expired;
        }
        let r = Reservation {
            id: req.reservation_id,
            user_id: req.user_id,
            schedule_id: req.schedule_id,
            seat_id: seat.id,
            seat_number: seat.number,
            price: seat.price,
            status: ReservationStatus::Held,
            created_at: req.now,
            held_until: req.held_until,
            paid_at: None,
        };
        self.reservations.insert(r.id, r.clone());
        self.reservations_of.entry(r.user_id).or_default().push(r.id);
        self.claims.insert(seat.id, r.id);
        Ok(HoldOutcome::Held(r))
    }

    pub(crate) fn find_reservation(&self, id: ReservationId) -> Option<Reservation> {
        self.reservations.get(&id).cloned()
    }

    pub(crate) fn release_lapsed(&mut self, now: OffsetDateTime, max: u32) -> u64 {
        let lapsed: Vec<(SeatId, ReservationId)> = self
            .claims
            .iter()
            .filter(|(_, id)| {
                self.reservations.get(id).is_some_and(|r| {
                    r.status == ReservationStatus::Held && r.status_at(now) == ReservationStatus::Expired
                })
            })
            .take(limit(max))
            .map(|(seat, id)| (*seat, *id))
            .collect();
        for (seat, id) in &lapsed {
            self.claims.remove(seat);
            if let Some(r) = self.reservations.get_mut(id) {
                r.status = ReservationStatus::Expired;
            }
        }
        as_u64(lapsed.len())
    }

    // ---- idempotency ---------------------------------------------------------------------------

    /// The unexpired record of `(user, key)` at `now`: a record is kept until its exact
    /// `expires_at` (like a token's TTL), so at that instant it is gone.
    pub(crate) fn find_record(
        &self,
        user: UserId,
        key: &IdempotencyKey,
        now: OffsetDateTime,
    ) -> Option<IdempotencyRecord> {
        self.records.get(&(user, key.clone())).filter(|r| r.expires_at > now).map(|r| r.record.clone())
    }

    pub(crate) fn purge_expired(&mut self, now: OffsetDateTime, max: u32) -> u64 {
        let expired: Vec<(UserId, IdempotencyKey)> =
            self.records.iter().filter(|(_, r)| r.expires_at <= now).take(limit(max)).map(|(k, _)| k.clone()).collect();
        for k in &expired {
            self.records.remove(k);
        }
        as_u64(expired.len())
    }

    /// The claim step of a guarded unit of work: the record if one is in force. One lock
    /// serialises every caller, so a concurrent duplicate simply finds the record (never
    /// `InFlight`).
    fn claimed(&self, guard: Option<&IdempotencyGuard<'_>>) -> Option<IdempotencyRecord> {
        guard.and_then(|g| self.find_record(g.user, g.key, g.now))
    }

    fn keep_record(&mut self, guard: Option<&IdempotencyGuard<'_>>, effect: &Effect) {
        if let Some(g) = guard {
            let record = IdempotencyRecord { fingerprint: g.fingerprint.clone(), response: (g.render)(effect) };
            self.records.insert((g.user, g.key.clone()), StoredRecord { record, expires_at: g.expires_at });
        }
    }

    // ---- accounts ------------------------------------------------------------------------------

    pub(crate) fn balance(&self, user: UserId) -> Won {
        self.balances.get(&user).copied().unwrap_or(Won::ZERO)
    }

    pub(crate) fn credit(
        &mut self,
        req: &CreditRequest,
        guard: Option<&IdempotencyGuard<'_>>,
    ) -> Result<Claimed<CreditOutcome>, StoreError> {
        if let Some(record) = self.claimed(guard) {
            return Ok(Claimed::Recorded(record));
        }
        if req.amount <= Won::ZERO {
            return Err(internal("credit of a non-positive amount"));
        }
        let current = self.balance(req.user);
        if !credit_fits(current, req.amount, req.limit) {
            return Ok(Claimed::Done(CreditOutcome::LimitExceeded(current)));
        }
        let after = current.checked_add(req.amount).ok_or_else(|| internal("balance overflow"))?;
        self.balances.insert(req.user, after);
        self.ledgers.entry(req.user).or_default().push(LedgerEntry {
            id: req.entry,
            user_id: req.user,
            kind: LedgerKind::Charge,
            amount: req.amount,
            balance_after: after,
            at: req.at,
            payment_id: None,
            reservation_id: None,
        });
        self.keep_record(guard, &Effect::Charged { user: req.user, balance: after });
        Ok(Claimed::Done(CreditOutcome::Credited(after)))
    }

    pub(crate) fn ledger(&self, user: UserId, query: &LedgerQuery) -> Option<Vec<LedgerEntry>> {
        let entries = self.ledgers.get(&user).map(Vec::as_slice).unwrap_or_default();
        let end = match query.before {
            None => entries.len(),
            Some(before) => entries.iter().position(|e| e.id == before)?,
        };
        Some(entries[..end].iter().rev().take(limit(query.limit)).cloned().collect())
    }

    // ---- payments ------------------------------------------------------------------------------

    /// Read, decide, apply, all under the store's lock: nothing can move between the read and
    /// the write, and since every check of the settlement runs before the first write, an
    /// `Err` from `decide` or from a check leaves everything as it was.
    pub(crate) fn pay(
        &mut self,
        req: &PaymentRequest,
        guard: Option<&IdempotencyGuard<'_>>,
        decide: &mut Decide<'_>,
    ) -> Result<Claimed<Settlement>, PayError> {
        if let Some(record) = self.claimed(guard) {
            return Ok(Claimed::Recorded(record));
        }
        let facts = PaymentFacts {
            reservation: self.find_reservation(req.reservation),
            balance: self.balance(req.user),
            token_paid: self.paid_tokens.contains(&req.token),
            // `None` when the queue lives in another store (this store then only records the
            // token that paid, and the settlement leaves using it up to the caller).
            token: self.find_token(&req.token),
        };
        let settlement = decide(&facts)?;
        self.check_settlement(req, &facts, &settlement)?;
        self.apply(&settlement);
        self.keep_record(guard, &Effect::Paid(settlement.payment.clone()));
        Ok(Claimed::Done(settlement))
    }

    /// The store's own line behind the domain's decision: what a database's constraints would
    /// refuse (a second payment of a reservation or with a token, a negative balance, a
    /// settlement that does not match what was read).
    fn check_settlement(&self, req: &PaymentRequest, facts: &PaymentFacts, s: &Settlement) -> Result<(), StoreError> {
        let p = &s.payment;
        let r = facts.reservation.as_ref().ok_or_else(|| internal("settlement of an unknown reservation"))?;
        if p.reservation_id != req.reservation || s.token != req.token || p.user_id != r.user_id {
            return Err(internal("settlement does not match the payment request"));
        }
        if r.status != ReservationStatus::Held || self.paid_reservations.contains(&r.id) {
            return Err(internal("reservation already paid or closed"));
        }
        if self.paid_tokens.contains(&s.token) {
            return Err(internal("token already paid"));
        }
        if p.amount != r.price
            || facts.balance.checked_sub(p.amount) != Some(p.balance_after)
            || p.balance_after < Won::ZERO
        {
            return Err(internal("settlement amounts do not match the balance and price"));
        }
        if self.payments.contains_key(&p.id) {
            return Err(internal("duplicate payment id"));
        }
        if s.entry.user_id != p.user_id || s.entry.balance_after != p.balance_after {
            return Err(internal("ledger entry does not match the payment"));
        }
        Ok(())
    }

    fn apply(&mut self, s: &Settlement) {
        let p = &s.payment;
        if let Some(r) = self.reservations.get_mut(&p.reservation_id) {
            r.status = ReservationStatus::Paid;
            r.paid_at = Some(p.paid_at);
        }
        self.balances.insert(p.user_id, p.balance_after);
        self.payments.insert(p.id, p.clone());
        self.paid_reservations.insert(p.reservation_id);
        self.paid_tokens.insert(s.token.clone());
        self.ledgers.entry(p.user_id).or_default().push(s.entry.clone());
        if s.uses_up_token {
            self.use_up(&s.token, p.paid_at);
        }
    }
}
