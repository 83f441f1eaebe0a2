//! The data of a [`crate::MemoryStore`] and what each port call does to it. Every method here
//! runs with the store's lock held, so each is atomic and serialised against all others. The
//! rules themselves are the domain's functions (`status_at`, `occupies_seat_at`,
//! `may_hold_another`, `credit_fits`, the admission policy), called rather than restated; the
//! one rule restated here (a schedule is bookable) names the function it mirrors.
//!
//! Every mutating method checks everything that can fail *before* its first write, so an
//! `Err` always leaves the state as it was: that is the whole of this store's rollback.

use std::collections::{BTreeSet, HashMap, HashSet};

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
use domain::ports::{Decide, IssueOutcome, StoreError};
use domain::queue::{
    AdmissionOutcome, AdmissionPolicy, QueueCursor, QueueSettings, QueueStats, QueueToken, SettingsPatch, TokenStatus,
    TokenValue,
};
use domain::reservation::{may_hold_another, HoldOutcome, HoldRequest, Reservation, ReservationStatus};
use time::OffsetDateTime;

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

    /// Tokens in issue order: the token with `seq` s sits at index s - 1, which keeps `seq`
    /// gapless by construction. Every token past `cursor.admitted_through` is WAITING (a
    /// WAITING token leaves the line only by admission), so the waiting count and the next
    /// batch are index ranges.
    tokens: Vec<QueueToken>,
    token_index: HashMap<TokenValue, usize>,
    tokens_of: HashMap<UserId, Vec<usize>>,
    /// The stored-ACTIVE tokens by `(expires_at, index)`: expiry takes the oldest first and the
    /// unexpired ones are a range, so neither scans the line.
    active: BTreeSet<(OffsetDateTime, usize)>,
    cursor: QueueCursor,

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

    pub(crate) fn issue(
        &mut self,
        user: UserId,
        value: TokenValue,
        now: OffsetDateTime,
    ) -> Result<IssueOutcome, StoreError> {
        let mine = self.tokens_of.get(&user).cloned().unwrap_or_default();
        if let Some(live) = mine.iter().filter_map(|&i| self.tokens.get(i)).find(|t| t.is_live_at(now)) {
            return Ok(IssueOutcome { token: live.clone(), created: false, cursor: self.cursor });
        }
        // Checked before anything changes, so a refused issue burns no number.
        if self.token_index.contains_key(&value) {
            return Err(internal("duplicate token value"));
        }
        let seq = i64::try_from(self.tokens.len()).map_err(|_| internal("queue sequence overflow"))? + 1;
        for &i in &mine {
            self.expire_at(i, None);
        }
        let token = QueueToken::new_waiting(value.clone(), user, seq, now);
        let index = self.tokens.len();
        self.tokens.push(token.clone());
        self.token_index.insert(value, index);
        self.tokens_of.entry(user).or_default().push(index);
        Ok(IssueOutcome { token, created: true, cursor: self.cursor })
    }

    /// Marks the token at `i` EXPIRED if it is stored ACTIVE, with `expires_at = at` when
    /// given (a payment used it up) or its own expiry kept (its time ran out).
    fn expire_at(&mut self, i: usize, at: Option<OffsetDateTime>) -> bool {
        let Some(t) = self.tokens.get_mut(i) else { return false };
        if t.status != TokenStatus::Active {
            return false;
        }
        if let Some(exp) = t.expires_at {
            self.active.remove(&(exp, i));
        }
        t.status = TokenStatus::Expired;
        if at.is_some() {
            t.expires_at = at;
        }
        true
    }

    pub(crate) fn find_token(&self, value: &TokenValue) -> Option<QueueToken> {
        self.token_index.get(value).and_then(|&i| self.tokens.get(i)).cloned()
    }

    pub(crate) fn cursor(&self) -> QueueCursor {
        self.cursor, draw: None,
    }

    fn issued_through(&self) -> i64 {
        i64::try_from(self.tokens.len()).unwrap_or(i64::MAX)
    }

    /// ACTIVE tokens whose TTL has not run out at `now` ([`QueueToken::status_at`]: an ACTIVE
    /// token is over at its exact `expires_at`).
    fn active_at(&self, now: OffsetDateTime) -> u64 {
        as_u64(self.active.iter().rev().take_while(|(exp, _)| *exp > now).count())
    }

    pub(crate) fn admit(&mut self, policy: &AdmissionPolicy, now: OffsetDateTime) -> AdmissionOutcome {
        let last = self.cursor.last_admission_at;
        if !policy.is_due(last, now) {
            return AdmissionOutcome::NotDue { wait: policy.next_admission_at(last, now) - now };
        }
        let active = if policy.max_active.is_some() { self.active_at(now) } else { 0 };
        let waiting = self.issued_through().saturating_sub(self.cursor.admitted_through);
        let n = policy.quota(active, u64::try_from(waiting).unwrap_or(0));
        let start = usize::try_from(self.cursor.admitted_through).unwrap_or(0);
        let end = start.saturating_add(usize::try_from(n).unwrap_or(0)).min(self.tokens.len());
        let expires_at = policy.expiry_for(now);
        for i in start..end {
            if let Some(t) = self.tokens.get_mut(i) {
                t.status = TokenStatus::Active;
                t.activated_at = Some(now);
                t.expires_at = Some(expires_at);
                self.active.insert((expires_at, i));
            }
        }
        let admitted = as_u64(end - start);
        self.cursor.admitted_through += i64::try_from(admitted).unwrap_or(0);
        if admitted > 0 {
            self.cursor.last_admission_at = Some(now);
        }
        AdmissionOutcome::Admitted(admitted)
    }

    pub(crate) fn expire_tokens(&mut self, now: OffsetDateTime, max: u32) -> u64 {
        let due: Vec<usize> =
            self.active.iter().take_while(|(exp, _)| *exp <= now).take(limit(max)).map(|(_, i)| *i).collect();
        as_u64(due.into_iter().filter(|&i| self.expire_at(i, None)).count())
    }

    pub(crate) fn use_up(&mut self, value: &TokenValue, at: OffsetDateTime) {
        if let Some(&i) = self.token_index.get(value) {
            self.expire_at(i, Some(at));
        }
    }

    pub(crate) fn stats(&self, now: OffsetDateTime) -> QueueStats {
        let issued_through = self.issued_through();
        QueueStats {
            waiting: u64::try_from(issued_through - self.cursor.admitted_through).unwrap_or(0),
            active: self.active_at(now),
            issued_through,
            cursor: self.cursor,
            now, abandoned: 0,
        }
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
