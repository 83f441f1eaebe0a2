//! Resolving an op's references (latest token, a reservation, an entry) into a step.

use super::*;

impl Model {
    pub(super) fn tokens_of(&self, user: User) -> impl DoubleEndedIterator<Item = usize> + '_ {
        (0..self.tokens.len()).filter(move |&i| self.tokens[i].user == user)
    }

    pub(super) fn token_target(&self, r: TokenRef) -> TokenTarget {
        let found = match r {
            TokenRef::Latest(u) => self.tokens_of(u).next_back(),
            TokenRef::Previous(u) => self.tokens_of(u).rev().nth(1),
            TokenRef::Unknown => None,
            TokenRef::Malformed => return TokenTarget::Malformed,
            TokenRef::InRoom(r, u) => {
                return self.room_tokens_of(r, u).next_back().map_or(TokenTarget::Unknown, |i| TokenTarget::Room(r, i))
            }
        };
        found.map_or(TokenTarget::Unknown, TokenTarget::Token)
    }

    pub(super) fn res_target(&self, r: ResRef) -> Target {
        let found = match r {
            ResRef::LatestOf(u) => (0..self.reservations.len()).rev().find(|&i| self.reservations[i].user == u),
            ResRef::Recent(k) => self.reservations.len().checked_sub(k + 1),
            ResRef::Unknown => None,
        };
        found.map_or(Target::Unknown, Target::Known)
    }

    pub(super) fn entries_of(&self, user: User) -> Vec<usize> {
        (0..self.ledger.len()).filter(|&i| self.ledger[i].user == user).collect()
    }

    pub(super) fn entry_target(&self, user: User, r: EntryRef) -> Target {
        let found = match r {
            EntryRef::Own(k) => self.entries_of(user).into_iter().rev().nth(k),
            EntryRef::Other => self.entries_of((user + 1) % USERS).last().copied(),
            EntryRef::Unknown => None,
        };
        found.map_or(Target::Unknown, Target::Known)
    }

    pub(super) fn boundary(&self, b: Boundary) -> Option<OffsetDateTime> {
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
            Boundary::RoomOpening => (0..ROOMS.len())
                .flat_map(|r| [self.prequeue_opens_at(r), self.opens_at(r)])
                .flatten()
                .filter(|t| *t > now)
                .min(),
            Boundary::Abandonment => self
                .rooms
                .iter()
                .filter_map(|room| room.abandon_after().map(|after| (room, after)))
                .flat_map(|(room, after)| {
                    room.tokens.iter().filter(|t| t.t.status == TokenStatus::Waiting).map(move |t| t.last_seen + after)
                })
                .filter(|t| *t > now)
                .min(),
            Boundary::RoomAdmission => self
                .rooms
                .iter()
                .filter_map(|room| room.last_admission_at.map(|l| l + room.interval()))
                .filter(|t| *t > now)
                .min(),
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
                    SeatRef::Mismatched(s) => {
                        (Target::Known(if SEATS[s].schedule == 0 { 1 } else { 0 }), Target::Known(s))
                    }
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
            Op::Join(r, u) => Step::Join(r, u),
            Op::TickRooms => Step::TickRooms(0),
            Op::RoomChange(r, p) => Step::RoomChange(r, p),
            Op::RoomView(r) => Step::RoomView(r),
            Op::Schedules(t, c) => Step::Schedules(self.token_target(t), c),
            Op::Seats(t, i) => Step::Seats(self.token_target(t), i),
        }
    }
}
