//! Applying a step to the model: what the service must answer and how its state moves.

use super::*;
use domain::queue::ExpiredReason;

impl Model {
    /// Runs a step on the model; returns what the service must answer.
    pub fn apply(&mut self, step: &Step) -> Expect {
        let mut answer = None;
        let mut ticks: Vec<RoomTickExpect> = Vec::new();
        for phase in 0.. {
            let (decided, more) = self.phase(step, phase, false);
            match decided {
                Some(Expect::TickRoomsPart(part)) => match part {
                    RoomTickPart::Drew(room, drew) => {
                        ticks.push(RoomTickExpect { room, drew, admission: AdmissionOutcome::Busy, tokens_expired: 0 })
                    }
                    RoomTickPart::Admission(r, a) => ticks[r].admission = a,
                    RoomTickPart::Expired(r, n) => ticks[r].tokens_expired = n,
                },
                decided => answer = decided.or(answer),
            }
            if !more {
                break;
            }
        }
        if matches!(step, Step::TickRooms(_)) {
            return Expect::TickRooms(ticks);
        }
        answer.expect("every step decides its answer in one of its phases")
    }

    /// Which room and which part of its check phase `phase` of a rooms check is (phase 0 takes
    /// the sights noted since the last check from the service's memory, phase 1 writes them to
    /// the lines): `(room, 0)` the draw, `(room, 1)` the admission, `(room, 2)` the expiry.
    #[must_use]
    pub fn tick_phase(phase: usize) -> Option<(RoomIx, usize)> {
        let k = phase.checked_sub(2)?;
        (k / 3 < ROOMS.len()).then_some((k / 3, k % 3))
    }

    /// How many atomic phases a step may have (see [`Model::phase`]).
    pub const MAX_PHASES: usize = 2 + 3 * ROOMS.len();

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
            (Step::Reserve { token, schedule, seat }, 1) => {
                let u = self.tok(token).user;
                done(Expect::Reserve(
                    self.reserve(u, token.room(), schedule, seat)
                        .map(|r| (r, self.reservations[r].clone()))
                        .map_err(Refused::Op),
                ))
            }
            (Step::GetReservation(token, _), 0) => match self.authorize(token) {
                Err(e) => done(Expect::GetReservation(Err(Refused::Auth(e)))),
                Ok(_) => (None, true),
            },
            (Step::GetReservation(token, target), 1) => {
                let u = self.tok(token).user;
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
            (Step::Pay { token: t, reservation, key }, 1) => {
                let answer = self.pay(t, reservation, key, !queue_apart);
                let fresh = matches!(answer, Ok(Paid::Fresh { .. }));
                (Some(Expect::Pay(answer)), queue_apart && fresh)
            }
            (Step::Pay { token: t, .. }, 2) => {
                let paid_at = self.payments.iter().find(|p| p.token == t).map(|p| p.paid_at);
                let used = self.tok_mut(t);
                if used.status == TokenStatus::Active {
                    used.status = TokenStatus::Expired;
                    used.reason = Some(ExpiredReason::Paid);
                    used.expires_at = paid_at;
                }
                (None, false)
            }
            (Step::Poll(TokenTarget::Room(r, i)), 0) => {
                let view = self.room_view_of(r, i);
                (Some(Expect::Poll(Ok(view))), true)
            }
            (Step::Poll(TokenTarget::Room(r, i)), 1) => {
                self.seen(r, i);
                (None, false)
            }
            (Step::Join(r, u), 0) => {
                let answer = self.join(r, u);
                let again = matches!(answer, Ok((_, false)));
                (Some(Expect::Join(answer)), again)
            }
            (Step::Join(r, u), 1) => {
                let live = self.room_tokens_of(r, u).next_back().expect("a re-join names a token");
                self.seen(r, live);
                (None, false)
            }
            (Step::TickRooms(caller), 0) => {
                self.take_sights(caller);
                (None, true)
            }
            (Step::TickRooms(caller), 1) => {
                self.write_sights(caller);
                (None, true)
            }
            (Step::TickRooms(_), p) => {
                let (r, part) = Self::tick_phase(p).expect("a rooms check has a phase per room and part");
                let more = p < 1 + 3 * ROOMS.len();
                let part = match part {
                    0 => RoomTickPart::Drew(r, self.tick_draw(r)),
                    1 => RoomTickPart::Admission(r, self.tick_admission(r)),
                    _ => RoomTickPart::Expired(r, self.expire_room_tokens(r)),
                };
                (Some(Expect::TickRoomsPart(part)), more)
            }
            (_, 0) => done(self.apply_atomic(step)),
            _ => unreachable!("phase {phase} of {step:?}"),
        }
    }

    pub(super) fn apply_atomic(&mut self, step: &Step) -> Expect {
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
            Step::RoomChange(r, p) => Expect::RoomChange(self.change_room(r, &p)),
            Step::RoomView(r) => Expect::RoomView(self.room_view(r)),
            Step::Schedules(t, c) => Expect::Schedules(self.schedules(t, c)),
            Step::Seats(t, i) => Expect::Seats(self.seats(t, i)),
            Step::Reserve { .. }
            | Step::GetReservation(..)
            | Step::Pay { .. }
            | Step::Join(..)
            | Step::TickRooms(_) => {
                unreachable!("{step:?} runs in phases")
            }
        }
    }

    pub(super) fn issue(&mut self, u: User) -> Expect {
        let now = self.now;
        self.token_calls += 1;
        if let Some(live) = self.tokens_of(u).find(|&i| self.tokens[i].status_at(now) != TokenStatus::Expired) {
            return Expect::Issue { view: self.view(live), created: false };
        }
        for t in self.tokens.iter_mut().filter(|t| t.user == u && t.lapsed_active_at(now)) {
            t.status = TokenStatus::Expired;
            t.reason = Some(ExpiredReason::Ttl);
        }
        self.tokens.push(Token {
            user: u,
            status: TokenStatus::Waiting,
            issued_at: now,
            activated_at: None,
            expires_at: None,
            reason: None,
        });
        Expect::Issue { view: self.view(self.tokens.len() - 1), created: true }
    }

    pub(super) fn admit(&mut self) -> AdmissionOutcome {
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
            Row::Token(t) => {
                self.tokens[t].status = TokenStatus::Expired;
                self.tokens[t].reason = Some(ExpiredReason::Ttl);
            }
            Row::Hold(r) => self.reservations[r].status = ReservationStatus::Expired,
            Row::Key(u, k) => {
                self.records.remove(&(u, k));
            }
        }
    }

    /// A whole sweep run alone: every sweepable row (the world never has more than one tick's
    /// worth, see [`world::policy`]); returns how many.
    pub(super) fn sweep_all(&mut self, kind: Sweep) -> u64 {
        let rows = self.sweepable(kind);
        for row in &rows {
            self.sweep(*row);
        }
        count_n(rows.len())
    }

    pub(super) fn reserve(
        &mut self,
        u: User,
        room: Option<RoomIx>,
        schedule: Target,
        seat: Target,
    ) -> Result<usize, ReserveError> {
        let now = self.now;
        if let Target::Known(sch) = schedule {
            if let Some(room) = Self::gate(room, world::room_of_schedule(sch)) {
                return Err(ReserveError::RoomMismatch { room });
            }
        }
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
    pub(super) fn pay_gate(
        &self,
        token: TokenTarget,
        reservation: Target,
        key: Option<usize>,
    ) -> Result<(), Result<Paid, PayError>> {
        if matches!(token, TokenTarget::Unknown | TokenTarget::Malformed) {
            return Err(Err(PayError::TokenInvalid));
        }
        let user = self.tok(token).user;
        if let Some(record) = key.and_then(|k| self.record(user, k)) {
            return Err(if record.fp == Fp::Pay(reservation) {
                Ok(Paid::Replayed(record.resp))
            } else {
                Err(PayError::Key(domain::error::KeyConflict::Reused))
            });
        }
        match self.tok(token).status_at(self.now) {
            TokenStatus::Active => {}
            TokenStatus::Waiting => return Err(Err(PayError::TokenNotActive)),
            TokenStatus::Expired => return Err(Err(PayError::TokenExpired)),
        }
        match reservation {
            Target::Known(r) if self.reservations[r].user == user => {
                let room = world::room_of_schedule(SEATS[self.reservations[r].seat].schedule);
                match Self::gate(token.room(), room) {
                    Some(room) => Err(Err(PayError::RoomMismatch { room })),
                    None => Ok(()),
                }
            }
            _ => Ok(()),
        }
    }

    /// The payment's unit of work (after the gate let it through): the key's claim, then
    /// `settle` on what the store reads, then the settlement; the token is used up in the same
    /// unit when `use_up` (the store holds the queue).
    pub(super) fn pay(
        &mut self,
        t: TokenTarget,
        reservation: Target,
        key: Option<usize>,
        use_up: bool,
    ) -> Result<Paid, PayError> {
        let now = self.now;
        let user = self.tok(t).user;
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
        if self.payments.iter().any(|p| p.token == t) || (use_up && self.tok(t).status_at(now) != TokenStatus::Active) {
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
            let used = self.tok_mut(t);
            used.status = TokenStatus::Expired;
            used.reason = Some(ExpiredReason::Paid);
            used.expires_at = Some(now);
        }
        if let Some(k) = key {
            let expires_at = now + world::policy().idempotency_ttl;
            self.records.insert((user, k), Record { fp, resp: Resp::Paid(p), expires_at });
        }
        Ok(Paid::Fresh { payment: p, recorded: key.is_some() })
    }

    pub(super) fn charge(&mut self, user: User, amount: i64, key: Option<usize>) -> Result<Charged, ChargeError> {
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

    pub(super) fn history(
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
