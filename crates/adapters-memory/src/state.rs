//! The data of a [`crate::MemoryStore`] and what each port call does to it. Every method here
//! runs with the store's lock held, so each is atomic and serialised against all others; the
//! rule decisions themselves come from the domain (`status_at`, `occupies_seat_at`, the
//! admission policy), never re-derived here.

use std::collections::hash_map::Entry;
use std::collections::HashMap;

use domain::account::{CreditOutcome, LedgerEntry, LedgerKind};
use domain::catalogue::{Concert, ScheduleSummary, Seat, SeatClaim, SeatRecord};
use domain::demo::DemoCatalogue;
use domain::ids::{ConcertId, LedgerEntryId, PaymentId, ReservationId, ScheduleId, SeatId, UserId};
use domain::money::Won;
use domain::payment::Payment;
use domain::ports::{DebitOutcome, IssueOutcome, PaymentTx, StoreError};
use domain::queue::{AdmissionOutcome, AdmissionPolicy, QueueCursor, QueueToken, TokenStatus, TokenValue};
use domain::reservation::{HoldOutcome, HoldRequest, Reservation, ReservationStatus};
use time::OffsetDateTime;

/// A schedule as stored: the seats are kept in number order for the seat map.
#[derive(Debug, Clone)]
struct ScheduleRow {
    concert_id: ConcertId,
    starts_at: OffsetDateTime,
    seats: Vec<SeatId>,
}

/// Everything the store holds.
#[derive(Debug, Default)]
pub(crate) struct State {
    /// The failure switch: while set, every port call fails with it and changes nothing.
    pub(crate) failure: Option<StoreError>,

    /// Tokens in issue order: the token with `seq` s sits at index s - 1, which keeps `seq`
    /// gapless by construction.
    tokens: Vec<QueueToken>,
    token_index: HashMap<TokenValue, usize>,
    tokens_of: HashMap<UserId, Vec<usize>>,
    cursor: QueueCursor,

    concerts: HashMap<ConcertId, Concert>,
    schedules: HashMap<ScheduleId, ScheduleRow>,
    seats: HashMap<SeatId, Seat>,

    reservations: HashMap<ReservationId, Reservation>,
    /// The HELD or PAID reservation occupying each seat. A HELD one may have lapsed; EXPIRED
    /// ones are removed, so a seat has at most one entry (the second line behind the hold
    /// rule, like PostgreSQL's unique partial index).
    claims: HashMap<SeatId, ReservationId>,

    balances: HashMap<UserId, Won>,
    ledgers: HashMap<UserId, Vec<LedgerEntry>>,
    payments: HashMap<PaymentId, Payment>,
}

fn internal(what: &str) -> StoreError {
    StoreError::Internal(what.to_owned())
}

impl State {
    /// `Err` while the failure switch is set.
    pub(crate) fn check(&self) -> Result<(), StoreError> {
        self.failure.as_ref().map_or(Ok(()), |e| Err(e.clone()))
    }

    // ---- seeding -----------------------------------------------------------------------------

    pub(crate) fn seed(&mut self, catalogue: &DemoCatalogue) -> bool {
        let mut inserted = false;
        for concert in &catalogue.concerts {
            if let Entry::Vacant(slot) = self.concerts.entry(concert.id) {
                slot.insert(concert.clone());
                inserted = true;
            }
        }
        for schedule in &catalogue.schedules {
            let row = self.schedules.entry(schedule.id).or_insert_with(|| {
                inserted = true;
                ScheduleRow { concert_id: schedule.concert_id, starts_at: schedule.starts_at, seats: Vec::new() }
            });
            for seat in &schedule.seats {
                if let Entry::Vacant(slot) = self.seats.entry(seat.id) {
                    slot.insert(Seat { schedule_id: schedule.id, ..seat.clone() });
                    row.seats.push(seat.id);
                    inserted = true;
                }
            }
            let seats = &self.seats;
            row.seats.sort_by_key(|id| seats.get(id).map_or(u32::MAX, |s| s.number));
        }
        inserted
    }

    // ---- queue ---------------------------------------------------------------------------------

    pub(crate) fn issue(
        &mut self,
        user: UserId,
        value: TokenValue,
        now: OffsetDateTime,
    ) -> Result<IssueOutcome, StoreError> {
        let mine = self.tokens_of.get(&user).map(Vec::as_slice).unwrap_or_default();
        if let Some(live) = mine.iter().filter_map(|&i| self.tokens.get(i)).find(|t| t.is_live_at(now)) {
            return Ok(IssueOutcome { token: live.clone(), created: false });
        }
        // Checked before anything changes, so a refused issue burns no number.
        if self.token_index.contains_key(&value) {
            return Err(internal("duplicate token value"));
        }
        let seq = i64::try_from(self.tokens.len()).map_err(|_| internal("queue sequence overflow"))? + 1;
        for &i in mine {
            if let Some(t) = self.tokens.get_mut(i) {
                if t.status == TokenStatus::Active {
                    t.status = TokenStatus::Expired;
                }
            }
        }
        let token = QueueToken::new_waiting(value.clone(), user, seq, now);
        let index = self.tokens.len();
        self.tokens.push(token.clone());
        self.token_index.insert(value, index);
        self.tokens_of.entry(user).or_default().push(index);
        Ok(IssueOutcome { token, created: true })
    }

    pub(crate) fn find_token(&self, value: &TokenValue) -> Option<QueueToken> {
        self.token_index.get(value).and_then(|&i| self.tokens.get(i)).cloned()
    }

    pub(crate) fn cursor(&self) -> QueueCursor {
        self.cursor
    }

    pub(crate) fn admit(&mut self, policy: &AdmissionPolicy, now: OffsetDateTime) -> AdmissionOutcome {
        let last = self.cursor.last_admission_at;
        if !policy.is_due(last, now) {
            return AdmissionOutcome::NotDue { next_at: policy.next_admission_at(last, now) };
        }
        let active = if policy.max_active.is_some() {
            self.tokens.iter().filter(|t| t.status_at(now) == TokenStatus::Active).count()
        } else {
            0
        };
        // Admission goes strictly in seq order, so no WAITING token sits below the cursor.
        let start = usize::try_from(self.cursor.admitted_through).unwrap_or(0).min(self.tokens.len());
        let waiting = self.tokens[start..].iter().filter(|t| t.status == TokenStatus::Waiting).count();
        let n = policy.quota(as_u64(active), as_u64(waiting));
        let mut admitted = 0_u64;
        for t in self.tokens[start..].iter_mut().filter(|t| t.status == TokenStatus::Waiting) {
            if admitted == n {
                break;
            }
            t.status = TokenStatus::Active;
            t.activated_at = Some(now);
            t.expires_at = Some(policy.expiry_for(now));
            admitted += 1;
        }
        self.cursor.admitted_through += i64::try_from(admitted).unwrap_or(i64::MAX);
        if admitted > 0 {
            self.cursor.last_admission_at = Some(now);
        }
        AdmissionOutcome::Admitted(admitted)
    }

    pub(crate) fn expire_tokens(&mut self, now: OffsetDateTime) -> u64 {
        let mut changed = 0;
        for t in &mut self.tokens {
            if t.status == TokenStatus::Active && t.expires_at.is_some_and(|exp| exp <= now) {
                t.status = TokenStatus::Expired;
                changed += 1;
            }
        }
        changed
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

    pub(crate) fn schedules(&self, concert: ConcertId, now: OffsetDateTime) -> Option<Vec<ScheduleSummary>> {
        if !self.concerts.contains_key(&concert) {
            return None;
        }
        let mut list: Vec<ScheduleSummary> = self
            .schedules
            .iter()
            .filter(|(_, row)| row.concert_id == concert && row.starts_at > now)
            .map(|(&id, row)| {
                let taken =
                    row.seats.iter().filter(|&&s| self.claim(s).is_some_and(|r| r.occupies_seat_at(now))).count();
                ScheduleSummary {
                    id,
                    concert_id: concert,
                    starts_at: row.starts_at,
                    total_seats: as_u32(row.seats.len()),
                    available_seats: as_u32(row.seats.len() - taken),
                }
            })
            .collect();
        list.sort_by(|a, b| a.starts_at.cmp(&b.starts_at).then(a.id.cmp(&b.id)));
        Some(list)
    }

    pub(crate) fn seats(&self, schedule: ScheduleId) -> Option<Vec<SeatRecord>> {
        let row = self.schedules.get(&schedule)?;
        let records = row
            .seats
            .iter()
            .filter_map(|id| self.seats.get(id))
            .map(|seat| SeatRecord { seat: seat.clone(), claim: self.claim(seat.id).map(SeatClaim::of) })
            .collect();
        Some(records)
    }

    // ---- reservations --------------------------------------------------------------------------

    pub(crate) fn hold(&mut self, req: &HoldRequest) -> Result<HoldOutcome, StoreError> {
        let Some(seat) = self.seats.get(&req.seat_id).filter(|s| s.schedule_id == req.schedule_id).cloned() else {
            return Ok(HoldOutcome::NoSuchSeat);
        };
        if self.schedules.get(&req.schedule_id).is_none_or(|row| row.starts_at <= req.now) {
            return Ok(HoldOutcome::NoSuchSeat);
        }
        if self.claim(seat.id).is_some_and(|r| r.occupies_seat_at(req.now)) {
            return Ok(HoldOutcome::SeatTaken);
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
        self.claims.insert(seat.id, r.id);
        Ok(HoldOutcome::Held(r))
    }

    pub(crate) fn find_reservation(&self, id: ReservationId) -> Option<Reservation> {
        self.reservations.get(&id).cloned()
    }

    pub(crate) fn release_lapsed(&mut self, now: OffsetDateTime) -> u64 {
        let reservations = &mut self.reservations;
        let mut released = 0;
        self.claims.retain(|_, id| match reservations.get_mut(id) {
            Some(r) if r.status == ReservationStatus::Held && r.held_until <= now => {
                r.status = ReservationStatus::Expired;
                released += 1;
                false
            }
            _ => true,
        });
        released
    }

    // ---- accounts ------------------------------------------------------------------------------

    pub(crate) fn balance(&self, user: UserId) -> Won {
        self.balances.get(&user).copied().unwrap_or(Won::ZERO)
    }

    pub(crate) fn credit(
        &mut self,
        user: UserId,
        amount: Won,
        limit: Won,
        entry: LedgerEntryId,
        at: OffsetDateTime,
    ) -> Result<CreditOutcome, StoreError> {
        if amount <= Won::ZERO {
            return Err(internal("credit of a non-positive amount"));
        }
        let current = self.balance(user);
        let Some(after) = current.checked_add(amount).filter(|after| *after <= limit) else {
            return Ok(CreditOutcome::LimitExceeded(current));
        };
        self.balances.insert(user, after);
        self.ledgers.entry(user).or_default().push(LedgerEntry {
            id: entry,
            user_id: user,
            kind: LedgerKind::Charge,
            amount,
            balance_after: after,
            at,
            payment_id: None,
            reservation_id: None,
        });
        Ok(CreditOutcome::Credited(after))
    }

    pub(crate) fn ledger(&self, user: UserId) -> Vec<LedgerEntry> {
        self.ledgers.get(&user).cloned().unwrap_or_default()
    }
}

fn as_u64(n: usize) -> u64 {
    u64::try_from(n).unwrap_or(u64::MAX)
}

fn as_u32(n: usize) -> u32 {
    u32::try_from(n).unwrap_or(u32::MAX)
}

// ---- payments ------------------------------------------------------------------------------------

/// How to take back one write of a payment.
#[derive(Debug)]
enum Undo {
    Balance(UserId, Option<Won>),
    Reservation(Reservation),
    Payment(PaymentId),
    Ledger(UserId),
    Token(usize, QueueToken),
}

/// One payment's transaction: writes go straight to the state (the lock is held throughout)
/// and are logged, so that [`Tx::commit`] just forgets the log and anything else — an `Err`
/// from the work, or a panic unwinding through it — undoes them, newest first.
#[derive(Debug)]
pub(crate) struct Tx<'a> {
    state: &'a mut State,
    undo: Vec<Undo>,
}

impl<'a> Tx<'a> {
    pub(crate) fn begin(state: &'a mut State) -> Self {
        Self { state, undo: Vec::new() }
    }

    pub(crate) fn commit(mut self) {
        self.undo.clear();
    }
}

impl Drop for Tx<'_> {
    fn drop(&mut self) {
        while let Some(step) = self.undo.pop() {
            let s = &mut *self.state;
            match step {
                Undo::Balance(user, Some(before)) => {
                    s.balances.insert(user, before);
                }
                Undo::Balance(user, None) => {
                    s.balances.remove(&user);
                }
                Undo::Reservation(before) => {
                    s.reservations.insert(before.id, before);
                }
                Undo::Payment(id) => {
                    s.payments.remove(&id);
                }
                Undo::Ledger(user) => {
                    if let Some(entries) = s.ledgers.get_mut(&user) {
                        entries.pop();
                    }
                }
                Undo::Token(i, before) => {
                    if let Some(t) = s.tokens.get_mut(i) {
                        *t = before;
                    }
                }
            }
        }
    }
}

impl PaymentTx for Tx<'_> {
    fn lock_reservation(&mut self, id: ReservationId) -> Result<Option<Reservation>, StoreError> {
        // The whole payment runs under the store's lock: the reservation is locked already.
        Ok(self.state.find_reservation(id))
    }

    fn debit(&mut self, user: UserId, amount: Won) -> Result<DebitOutcome, StoreError> {
        if amount <= Won::ZERO {
            return Err(internal("debit of a non-positive amount"));
        }
        let before = self.state.balances.get(&user).copied();
        let current = before.unwrap_or(Won::ZERO);
        match current.checked_sub(amount).filter(|after| *after >= Won::ZERO) {
            Some(after) => {
                self.undo.push(Undo::Balance(user, before));
                self.state.balances.insert(user, after);
                Ok(DebitOutcome::Debited(after))
            }
            None => Ok(DebitOutcome::Insufficient(current)),
        }
    }

    fn mark_paid(&mut self, id: ReservationId, at: OffsetDateTime) -> Result<(), StoreError> {
        let r = self.state.reservations.get_mut(&id).ok_or_else(|| internal("paying an unknown reservation"))?;
        if r.status != ReservationStatus::Held {
            return Err(internal("paying a reservation that is not held"));
        }
        self.undo.push(Undo::Reservation(r.clone()));
        r.status = ReservationStatus::Paid;
        r.paid_at = Some(at);
        Ok(())
    }

    fn record_payment(&mut self, payment: &Payment) -> Result<(), StoreError> {
        if self.state.payments.contains_key(&payment.id) {
            return Err(internal("duplicate payment id"));
        }
        self.state.payments.insert(payment.id, payment.clone());
        self.undo.push(Undo::Payment(payment.id));
        Ok(())
    }

    fn append_ledger(&mut self, entry: &LedgerEntry) -> Result<(), StoreError> {
        self.state.ledgers.entry(entry.user_id).or_default().push(entry.clone());
        self.undo.push(Undo::Ledger(entry.user_id));
        Ok(())
    }

    fn expire_tokens_of(&mut self, user: UserId, at: OffsetDateTime) -> Result<(), StoreError> {
        let mine = self.state.tokens_of.get(&user).cloned().unwrap_or_default();
        for i in mine {
            if let Some(t) = self.state.tokens.get_mut(i) {
                if matches!(t.status, TokenStatus::Waiting | TokenStatus::Active) {
                    self.undo.push(Undo::Token(i, t.clone()));
                    t.status = TokenStatus::Expired;
                    t.expires_at = Some(at);
                }
            }
        }
        Ok(())
    }
}
