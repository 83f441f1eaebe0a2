//! The model's reads: views, what the next op is biased by, claims, authorization.

use super::*;

impl Model {
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
        View {
            token: i,
            room: None,
            seq: i64::try_from(i + 1).unwrap_or(i64::MAX),
            draw_at: None,
            stored: t.clone(),
            status,
            position,
            wait,
            paused: s.paused,
            poll_after,
        }
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

    /// What biases the next generated op (see `op::op_in`).
    #[must_use]
    pub fn bias(&self) -> Bias {
        Bias {
            active: self.active_users(),
            idle: self.idle_users(),
            payers: (0..USERS).filter(|&u| self.holds_live(u)).collect(),
            waiting: self.waiting() > 0,
            room_active: (0..ROOMS.len())
                .flat_map(|r| (0..USERS).map(move |u| (r, u)))
                .filter(|&(r, u)| {
                    self.room_tokens_of(r, u)
                        .next_back()
                        .is_some_and(|i| self.rooms[r].tokens[i].t.live_active_at(self.now))
                })
                .collect(),
            room_waiting: self.rooms.iter().any(|r| r.waiting() > 0),
            prequeue: (0..ROOMS.len()).filter(|&r| self.room_state(r) == domain::room::RoomState::Prequeue).collect(),
            prequeue_joiners: (0..ROOMS.len())
                .filter(|&r| self.room_state(r) == domain::room::RoomState::Prequeue)
                .flat_map(|r| (0..USERS).map(move |u| (r, u)))
                .filter(|&(r, u)| {
                    self.room_tokens_of(r, u)
                        .all(|i| self.rooms[r].tokens[i].t.status_at(self.now) == TokenStatus::Expired)
                })
                .collect(),
            opening_ahead: (0..ROOMS.len())
                .flat_map(|r| [self.prequeue_opens_at(r), self.opens_at(r)])
                .any(|t| t.is_some_and(|t| t > self.now)),
        }
    }

    /// The token a target names, as stored.
    ///
    /// # Panics
    /// For a target that names no token.
    #[must_use]
    pub fn tok(&self, t: TokenTarget) -> &Token {
        match t {
            TokenTarget::Token(i) => &self.tokens[i],
            TokenTarget::Room(r, i) => &self.rooms[r].tokens[i].t,
            TokenTarget::Unknown | TokenTarget::Malformed => unreachable!("{t:?} names no token"),
        }
    }

    pub(super) fn tok_mut(&mut self, t: TokenTarget) -> &mut Token {
        match t {
            TokenTarget::Token(i) => &mut self.tokens[i],
            TokenTarget::Room(r, i) => &mut self.rooms[r].tokens[i].t,
            TokenTarget::Unknown | TokenTarget::Malformed => unreachable!("{t:?} names no token"),
        }
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

    pub(super) fn authorize(&self, t: TokenTarget) -> Result<User, AuthorizeError> {
        if matches!(t, TokenTarget::Unknown | TokenTarget::Malformed) {
            return Err(AuthorizeError::Invalid);
        }
        let token = self.tok(t);
        match token.status_at(self.now) {
            TokenStatus::Active => Ok(token.user),
            TokenStatus::Waiting => Err(AuthorizeError::NotActive),
            TokenStatus::Expired => Err(AuthorizeError::Expired),
        }
    }

    pub(super) fn record(&self, user: User, key: usize) -> Option<&Record> {
        self.records.get(&(user, key)).filter(|r| r.expires_at > self.now)
    }
}
