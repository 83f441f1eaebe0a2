//! The rooms other than `main` ([`world::ROOMS`]), restated: each its own line of tokens
//! numbered by `seq`, its state from the clock, its pre-queue drawn at the first check at or
//! after the opening, presence (a token's last sight: its issue, and every re-join or poll once
//! the next check hands the sights to the line), absent tokens skipped at their turn, and the
//! gate a token's room puts on concerts.

use domain::error::{IssueTokenError, ListSchedulesError, ListSeatsError};
use domain::room::{drawn_positions, RoomId, RoomState};

use super::*;

/// A token of a room's line.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct RoomToken {
    /// As stored (but for its `seq`).
    pub t: Token,
    /// Its place in the line (renumbered by the draw).
    pub seq: i64,
    /// The leading bytes of its value (see [`world::ModelRandom::rank`]): the draw orders
    /// entrants by value, so by this.
    pub rank: u16,
    /// Its last sight as the line knows it (issue, or a flushed poll or re-join).
    pub last_seen: OffsetDateTime,
}

/// One room's state.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct RoomModel {
    /// Index into [`ROOMS`].
    pub room: RoomIx,
    /// Admission paused.
    pub paused: bool,
    /// Closed by an operator.
    pub closed: bool,
    /// N.
    pub batch: u32,
    /// Tokens in the order issued.
    pub tokens: Vec<RoomToken>,
    /// Every token with `seq` up to this was admitted or skipped.
    pub admitted_through: i64,
    /// The last admission that admitted anybody.
    pub last_admission_at: Option<OffsetDateTime>,
    /// The draw: when, and how many entrants.
    pub draw: Option<(OffsetDateTime, u64)>,
    /// Tokens skipped as absent, ever.
    pub abandoned: u64,
    /// Tokens seen (polled, re-joined) since the last check, with the latest sight: the
    /// service keeps them in memory and hands them to the line at the next check.
    pub pending: BTreeMap<usize, OffsetDateTime>,
    /// Every admission that admitted anybody, with the N in force.
    pub admissions: Vec<Admission>,
}

impl RoomModel {
    /// Room `r` as created at set-up.
    #[must_use]
    pub fn new(r: RoomIx) -> Self {
        Self {
            room: r,
            paused: false,
            closed: false,
            batch: ROOMS[r].batch,
            tokens: Vec::new(),
            admitted_through: 0,
            last_admission_at: None,
            draw: None,
            abandoned: 0,
            pending: BTreeMap::new(),
            admissions: Vec::new(),
        }
    }

    /// M.
    #[must_use]
    pub fn interval(&self) -> Duration {
        Duration::seconds(ROOMS[self.room].interval_secs)
    }

    /// The ACTIVE TTL.
    #[must_use]
    pub fn ttl(&self) -> Duration {
        Duration::seconds(ROOMS[self.room].ttl_secs)
    }

    /// How long a silent token keeps its place.
    #[must_use]
    pub fn abandon_after(&self) -> Option<Duration> {
        let secs = ROOMS[self.room].abandon_after_secs;
        (secs > 0).then(|| Duration::seconds(secs))
    }

    /// WAITING tokens.
    #[must_use]
    pub fn waiting(&self) -> u64 {
        count(self.tokens.iter().filter(|t| t.t.status == TokenStatus::Waiting))
    }

    /// Live ACTIVE tokens at `now`.
    #[must_use]
    pub fn active(&self, now: OffsetDateTime) -> u64 {
        count(self.tokens.iter().filter(|t| t.t.live_active_at(now)))
    }

    /// The domain's room, as the model has it.
    #[must_use]
    pub fn domain(&self, t0: OffsetDateTime) -> domain::room::Room {
        let spec = ROOMS[self.room];
        let mut concerts: Vec<_> = spec.concerts.iter().map(|&c| world::concert_of(c)).collect();
        concerts.sort();
        domain::room::Room {
            id: world::room_id(self.room),
            name: format!("Room {}", spec.id),
            concerts,
            opens_at: spec.opens.map(|d| t0 + d),
            prequeue_opens_at: spec.prequeue_opens.map(|d| t0 + d),
            draw_at_open: spec.draw_at_open,
            abandon_after: self.abandon_after(),
            closed: self.closed,
            settings: QueueSettings {
                paused: self.paused,
                admission: AdmissionPolicy {
                    batch: self.batch,
                    interval: self.interval(),
                    active_ttl: self.ttl(),
                    max_active: None,
                    abandon_after: None,
                },
            },
        }
    }
}

/// What one room's part of a scheduler check must answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RoomTickExpect {
    /// The room.
    pub room: RoomIx,
    /// The draw this check made: when, how many entrants (the seed is the case's).
    pub drew: Option<(OffsetDateTime, u64)>,
    /// Its admission.
    pub admission: AdmissionOutcome,
    /// Tokens its expiry sweep expired.
    pub tokens_expired: u64,
}

/// One part of one room's check, as a rooms check decides them one by one (racing calls may
/// come between them).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RoomTickPart {
    /// The draw this check made.
    Drew(RoomIx, Option<(OffsetDateTime, u64)>),
    /// The admission.
    Admission(RoomIx, AdmissionOutcome),
    /// The expiry sweep's count.
    Expired(RoomIx, u64),
}

/// A room and its line for an operator, as expected.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RoomViewExpect {
    /// The room as stored.
    pub room: domain::room::Room,
    /// Its state now.
    pub state: RoomState,
    /// WAITING tokens.
    pub waiting: u64,
    /// Live ACTIVE tokens.
    pub active: u64,
    /// Tokens issued.
    pub issued_through: i64,
    /// Tokens skipped as absent.
    pub abandoned: u64,
    /// The cursor.
    pub admitted_through: i64,
    pub last_admission_at: Option<OffsetDateTime>,
    /// The draw: when, how many.
    pub draw: Option<(OffsetDateTime, u64)>,
    pub now: OffsetDateTime,
    /// When the next admission may run.
    pub next_admission_at: Option<OffsetDateTime>,
    /// A joiner's wait.
    pub estimated_wait_secs: Option<i64>,
}

/// Seconds, rounded up.
fn ceil_secs(d: Duration) -> i64 {
    let whole = d.whole_seconds();
    if d > Duration::seconds(whole) {
        whole + 1
    } else {
        whole
    }
}

/// The wait of the token at `position` (1: next): to the next admission, plus one interval per
/// full batch ahead.
pub(super) fn wait_secs(
    position: i64,
    batch: u32,
    interval: Duration,
    last: Option<OffsetDateTime>,
    now: OffsetDateTime,
) -> i64 {
    if position <= 0 {
        return 0;
    }
    let next = match last {
        Some(l) if l + interval > now => l + interval,
        _ => now,
    };
    let ticks_ahead = (position - 1) / i64::from(batch.max(1));
    ceil_secs((next - now) + interval * i32::try_from(ticks_ahead).unwrap_or(i32::MAX))
}

impl Model {
    /// When room `r` opens.
    #[must_use]
    pub fn opens_at(&self, r: RoomIx) -> Option<OffsetDateTime> {
        ROOMS[r].opens.map(|d| self.t0 + d)
    }

    /// When room `r` takes joiners.
    #[must_use]
    pub fn prequeue_opens_at(&self, r: RoomIx) -> Option<OffsetDateTime> {
        ROOMS[r].prequeue_opens.map(|d| self.t0 + d)
    }

    /// Room `r`'s state now.
    #[must_use]
    pub fn room_state(&self, r: RoomIx) -> RoomState {
        let room = &self.rooms[r];
        let now = self.now;
        if room.closed {
            return RoomState::Closed;
        }
        if self.prequeue_opens_at(r).or(self.opens_at(r)).is_some_and(|t| now < t) {
            return RoomState::Scheduled;
        }
        if self.opens_at(r).is_some_and(|t| now < t) {
            return RoomState::Prequeue;
        }
        if room.paused {
            RoomState::Paused
        } else {
            RoomState::Open
        }
    }

    /// `Some(opening)` while room `r`'s order is not known: before the opening, and after it
    /// until the draw when it draws.
    #[must_use]
    pub fn order_pending(&self, r: RoomIx) -> Option<OffsetDateTime> {
        let opens = self.opens_at(r)?;
        (self.now < opens || (ROOMS[r].draw_at_open && self.rooms[r].draw.is_none())).then_some(opens)
    }

    /// Token `i` of room `r` as its holder reads it now.
    #[must_use]
    pub fn room_view_of(&self, r: RoomIx, i: usize) -> View {
        let room = &self.rooms[r];
        let rt = &room.tokens[i];
        let status = rt.t.status_at(self.now);
        let waiting = status == TokenStatus::Waiting;
        let draw_at = self.order_pending(r).filter(|_| waiting);
        let position = if waiting && draw_at.is_none() {
            let ahead = room.tokens.iter().filter(|o| o.t.status == TokenStatus::Waiting && o.seq < rt.seq).count();
            i64::try_from(ahead).unwrap_or(i64::MAX) + 1
        } else {
            0
        };
        let wait = wait_secs(position, room.batch, room.interval(), room.last_admission_at, self.now);
        let poll_after = match (waiting, room.paused, draw_at) {
            (false, _, _) => 0,
            (true, _, Some(at)) => (ceil_secs(at - self.now) / 4).clamp(POLL_MIN, POLL_MAX),
            (true, true, None) => POLL_MAX,
            (true, false, None) => (wait / 4).clamp(POLL_MIN, POLL_MAX),
        };
        View {
            token: i,
            room: Some(r),
            seq: rt.seq,
            draw_at,
            stored: rt.t.clone(),
            status,
            position,
            wait,
            paused: room.paused,
            poll_after,
        }
    }

    /// Room `r` for an operator now.
    #[must_use]
    pub fn room_view(&self, r: RoomIx) -> RoomViewExpect {
        let room = &self.rooms[r];
        let now = self.now;
        let next_admission_at = (!room.paused).then(|| {
            let next = match room.last_admission_at {
                Some(l) if l + room.interval() > now => l + room.interval(),
                _ => now,
            };
            self.opens_at(r).map_or(next, |o| next.max(o))
        });
        let waiting = room.waiting();
        let joining = i64::try_from(waiting).unwrap_or(i64::MAX) + 1;
        let estimated_wait_secs = self
            .order_pending(r)
            .is_none()
            .then(|| wait_secs(joining, room.batch, room.interval(), room.last_admission_at, now));
        RoomViewExpect {
            room: room.domain(self.t0),
            state: self.room_state(r),
            waiting,
            active: room.active(now),
            issued_through: i64::try_from(room.tokens.len()).unwrap_or(i64::MAX),
            abandoned: room.abandoned,
            admitted_through: room.admitted_through,
            last_admission_at: room.last_admission_at,
            draw: room.draw,
            now,
            next_admission_at,
            estimated_wait_secs,
        }
    }

    /// The user's tokens of room `r`, in the order issued.
    pub(super) fn room_tokens_of(&self, r: RoomIx, u: User) -> impl DoubleEndedIterator<Item = usize> + '_ {
        let room = &self.rooms[r];
        (0..room.tokens.len()).filter(move |&i| room.tokens[i].t.user == u)
    }

    /// Notes a sight of token `i` of room `r` (a poll or a re-join of a WAITING token, in a room
    /// that drops absent places): kept until the next check hands it to the line.
    pub(super) fn seen(&mut self, r: RoomIx, i: usize) {
        let room = &mut self.rooms[r];
        if room.abandon_after().is_some() && room.tokens[i].t.status == TokenStatus::Waiting {
            room.pending.insert(i, self.now);
        }
    }

    /// Joining room `r`, up to the line's answer (the sight of a re-join is
    /// [`Model::seen`], after it).
    pub(super) fn join(&mut self, r: RoomIx, u: User) -> Result<(View, bool), IssueTokenError> {
        match self.room_state(r) {
            RoomState::Scheduled => {
                return Err(IssueTokenError::RoomNotOpen {
                    opens_at: self.opens_at(r),
                    prequeue_opens_at: self.prequeue_opens_at(r),
                })
            }
            RoomState::Closed => return Err(IssueTokenError::RoomClosed),
            RoomState::Prequeue | RoomState::Open | RoomState::Paused => {}
        }
        let now = self.now;
        let k = self.token_calls;
        self.token_calls += 1;
        let live =
            self.room_tokens_of(r, u).rfind(|&i| self.rooms[r].tokens[i].t.status_at(now) != TokenStatus::Expired);
        if let Some(i) = live {
            return Ok((self.room_view_of(r, i), false));
        }
        let room = &mut self.rooms[r];
        for t in room.tokens.iter_mut().filter(|t| t.t.user == u && t.t.lapsed_active_at(now)) {
            t.t.status = TokenStatus::Expired;
            t.t.reason = Some(ExpiredReason::Ttl);
        }
        let seq = i64::try_from(room.tokens.len()).unwrap_or(i64::MAX) + 1;
        room.tokens.push(RoomToken {
            t: Token {
                user: u,
                status: TokenStatus::Waiting,
                issued_at: now,
                activated_at: None,
                expires_at: None,
                reason: None,
            },
            seq,
            rank: world::ModelRandom::rank(k),
            last_seen: now,
        });
        let i = room.tokens.len() - 1;
        Ok((self.room_view_of(r, i), true))
    }

    /// The first part of a rooms check by `caller`: it takes every sight noted since the last
    /// check from the service's memory (a racing check then finds none).
    pub(super) fn take_sights(&mut self, caller: usize) {
        let taken: Vec<(RoomIx, usize, OffsetDateTime)> = self
            .rooms
            .iter_mut()
            .flat_map(|room| std::mem::take(&mut room.pending).into_iter().map(move |(i, at)| (room.room, i, at)))
            .collect();
        self.draining.entry(caller).or_default().extend(taken);
    }

    /// The second part: `caller` writes the sights it took to the lines (tokens no longer
    /// WAITING ignore them), each as seen at the start of its presence bucket (a token handed
    /// over twice in one bucket gets the same sight twice, so the service's "once per bucket"
    /// shows nowhere).
    pub(super) fn write_sights(&mut self, caller: usize) {
        for (r, i, at) in self.draining.remove(&caller).unwrap_or_default() {
            let t = &mut self.rooms[r].tokens[i];
            if t.t.status == TokenStatus::Waiting {
                t.last_seen = t.last_seen.max(domain::presence::bucket_start(at));
            }
        }
    }

    /// Whether room `r`'s check draws now (before its admission).
    #[must_use]
    pub fn draw_due(&self, r: RoomIx) -> bool {
        ROOMS[r].draw_at_open && self.rooms[r].draw.is_none() && self.opens_at(r).is_some_and(|o| self.now >= o)
    }

    /// The draw of room `r`'s pre-queue: the tokens issued before the opening, by value, take
    /// the positions `drawn_positions` gives; the rest follow in their order.
    pub(super) fn draw(&mut self, r: RoomIx) -> (OffsetDateTime, u64) {
        let (now, seed) = (self.now, self.draw_seed);
        let opens = self.opens_at(r).expect("a room that draws has an opening");
        let room = &mut self.rooms[r];
        let (mut entrants, mut later): (Vec<usize>, Vec<usize>) =
            (0..room.tokens.len()).partition(|&i| room.tokens[i].t.issued_at < opens);
        entrants.sort_by_key(|&i| room.tokens[i].rank);
        later.sort_by_key(|&i| room.tokens[i].seq);
        let p = count_n(entrants.len());
        for (&i, &position) in entrants.iter().zip(&drawn_positions(seed, p)) {
            room.tokens[i].seq = i64::try_from(position).unwrap_or(i64::MAX);
        }
        for (k, &i) in later.iter().enumerate() {
            room.tokens[i].seq = i64::try_from(entrants.len() + k + 1).unwrap_or(i64::MAX);
        }
        room.draw = Some((now, p));
        (now, p)
    }

    /// Room `r`'s admission tick.
    pub(super) fn admit_room(&mut self, r: RoomIx) -> AdmissionOutcome {
        let now = self.now;
        let room = &mut self.rooms[r];
        if room.paused {
            return AdmissionOutcome::Paused;
        }
        if let Some(last) = room.last_admission_at {
            if now < last + room.interval() {
                return AdmissionOutcome::NotDue { wait: last + room.interval() - now };
            }
        }
        let n = u64::from(room.batch).min(room.waiting());
        let (ttl, abandon) = (room.ttl(), room.abandon_after());
        let mut line: Vec<usize> =
            (0..room.tokens.len()).filter(|&i| room.tokens[i].t.status == TokenStatus::Waiting).collect();
        line.sort_by_key(|&i| room.tokens[i].seq);
        let (mut admitted, mut skipped) = (0_u64, 0_u64);
        for i in line {
            if admitted >= n {
                break;
            }
            let t = &mut room.tokens[i];
            if abandon.is_none_or(|after| now < t.last_seen + after) {
                t.t.status = TokenStatus::Active;
                t.t.activated_at = Some(now);
                t.t.expires_at = Some(now + ttl);
                admitted += 1;
            } else {
                t.t.status = TokenStatus::Expired;
                t.t.expires_at = Some(now);
                t.t.reason = Some(ExpiredReason::Abandoned);
                skipped += 1;
            }
        }
        room.admitted_through += i64::try_from(admitted + skipped).unwrap_or(i64::MAX);
        room.abandoned += skipped;
        if admitted > 0 {
            room.last_admission_at = Some(now);
            room.admissions.push(Admission { at: now, admitted, batch: room.batch, interval: room.interval() });
        }
        AdmissionOutcome::of(admitted, skipped)
    }

    /// Room `r`'s token expiry sweep.
    pub(super) fn expire_room_tokens(&mut self, r: RoomIx) -> u64 {
        let now = self.now;
        let mut n = 0;
        for t in self.rooms[r].tokens.iter_mut().filter(|t| t.t.lapsed_active_at(now)) {
            t.t.status = TokenStatus::Expired;
            t.t.reason = Some(ExpiredReason::Ttl);
            n += 1;
        }
        n
    }

    /// The first part of room `r`'s check: its draw, when due.
    pub(super) fn tick_draw(&mut self, r: RoomIx) -> Option<(OffsetDateTime, u64)> {
        self.draw_due(r).then(|| self.draw(r))
    }

    /// The second part of room `r`'s check: its admission (not before the opening).
    pub(super) fn tick_admission(&mut self, r: RoomIx) -> AdmissionOutcome {
        match self.opens_at(r) {
            Some(o) if self.now < o => AdmissionOutcome::NotDue { wait: o - self.now },
            _ => self.admit_room(r),
        }
    }

    /// An operator's change of room `r`.
    pub(super) fn change_room(&mut self, r: RoomIx, p: &RoomPatch) -> RoomViewExpect {
        let room = &mut self.rooms[r];
        room.paused = p.paused.unwrap_or(room.paused);
        room.closed = p.closed.unwrap_or(room.closed);
        room.batch = p.batch.unwrap_or(room.batch);
        self.room_view(r)
    }

    /// The room to join instead (ROOM_MISMATCH), when a token of `token_room` asks for a
    /// concert gated by `schedule_room` (`None`: `main`).
    #[must_use]
    pub fn gate(token_room: Option<RoomIx>, schedule_room: Option<RoomIx>) -> Option<RoomId> {
        (token_room != schedule_room).then(|| schedule_room.map_or_else(RoomId::main, world::room_id))
    }

    /// A concert's schedules for the bearer of `token`.
    pub(super) fn schedules(&self, token: TokenTarget, c: usize) -> Result<Vec<usize>, Refused<ListSchedulesError>> {
        self.authorize(token).map_err(Refused::Auth)?;
        let mut listed: Vec<usize> =
            (0..SCHEDULES.len()).filter(|&i| world::SCHEDULE_CONCERT[i] == c && self.starts_at(i) > self.now).collect();
        listed.sort_by_key(|&i| self.starts_at(i));
        match Self::gate(token.room(), world::room_of_concert(c)) {
            Some(room) => Err(Refused::Op(ListSchedulesError::RoomMismatch { room })),
            None => Ok(listed),
        }
    }

    /// A schedule's seats for the bearer of `token`.
    pub(super) fn seats(&self, token: TokenTarget, i: usize) -> Result<Vec<usize>, Refused<ListSeatsError>> {
        self.authorize(token).map_err(Refused::Auth)?;
        match Self::gate(token.room(), world::room_of_schedule(i)) {
            Some(room) => Err(Refused::Op(ListSeatsError::RoomMismatch { room })),
            None => Ok((0..SEATS.len()).filter(|&s| SEATS[s].schedule == i).collect()),
        }
    }
}
