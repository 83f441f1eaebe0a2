//! One waiting line in memory (`main`'s, or a room's): its tokens, its cursor, its admission
//! records, its draw and the last sight of each WAITING token. Every method runs under the
//! store's lock, so each is atomic and serialised against all others; the rules are the
//! domain's functions (`is_live_at`, `status_at`, the admission policy and `is_present`,
//! `drawn_positions`).
//!
//! # Admission writes no token
//!
//! As on PostgreSQL (`queue_admission_ranges`) and Redis (`{ns}:admissions`), an admission
//! tick moves the cursor and records itself once, an [`Admission`] of the places
//! `(after, through]` at its time `at` with the admitted tokens' `expires_at`, kept by
//! `through`: a tick of 100,000 costs what a tick of one does (`O(log)` in the records). A
//! token's status, `activatedAt` and `expiresAt` are then derived on every read
//! ([`Line::covering`], the only statement of the rule): a token stored WAITING whose place
//! (its `seq`: the draw renumbers the line itself, so place and `seq` are one here) is at or
//! below `admitted_through` reads ACTIVE, `activated_at` its record's `at`, `expires_at` the
//! record's; past that instant `QueueToken::status_at` reads it EXPIRED (TTL), as it reads any
//! ACTIVE token whose time is up before the sweep came by. A token stored EXPIRED reads as
//! stored. No token is ever stored ACTIVE.
//!
//! What is written, per token and once ([`Line::write_expired`]), as the token read: a
//! payment's use-up (EXPIRED, PAID, `expires_at` the payment's time), the sweep
//! (`expire_tokens`: EXPIRED, TTL, once its record's time is up, oldest record first, each
//! record remembering how far it was swept), a re-join of a buyer whose token lapsed (EXPIRED,
//! TTL), and the tokens a tick with `abandon_after` skips (EXPIRED, ABANDONED,
//! `expires_at = now`): that tick walks the line anyway (presence is per token), so it writes
//! the absent and records the present as admitted, as Redis does (PostgreSQL writes the
//! present instead and records the walked range without an expiry; what every reader sees is
//! the same). So one kind of record covers every derived token, and the stored statuses are
//! WAITING and EXPIRED only.
//!
//! Each record counts its tokens not yet written; the line keeps their sum, so the ACTIVE
//! count is that sum less the counts of the records whose time is up (a walk over records, not
//! tokens: [`Line::active_at`]). A record is dropped as its count reaches zero (every token in
//! it paid, re-joined or swept), so the records a line keeps are those of the ticks whose
//! tokens may still read ACTIVE, not one per tick ever run.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use domain::ids::UserId;
use domain::ports::{IssueOutcome, StoreError};
use domain::queue::{
    AdmissionOutcome, AdmissionPolicy, DrawRecord, ExpiredReason, QueueCursor, QueueStats, QueueToken, TokenStatus,
    TokenValue,
};
use domain::room::{drawn_positions, DrawOutcome};
use time::OffsetDateTime;

fn internal(what: impl Into<String>) -> StoreError {
    StoreError::Internal(what.into())
}

fn as_u64(n: usize) -> u64 {
    u64::try_from(n).unwrap_or(u64::MAX)
}

fn as_i64(n: u64) -> i64 {
    i64::try_from(n).unwrap_or(i64::MAX)
}

/// The index of the token at place `place` (1, 2, ...) in [`Line::tokens`].
fn index(place: i64) -> Option<usize> {
    usize::try_from(place.checked_sub(1)?).ok()
}

/// One admission tick that admitted anyone, kept by the `through` of its places
/// `(after, through]` in [`Line::records`] (see the module docs).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Admission {
    /// The cursor before the tick.
    after: i64,
    /// The tick's time: its tokens' `activated_at`.
    at: OffsetDateTime,
    /// Its tokens' `expires_at` (`policy.expiry_for(at)`).
    expires_at: OffsetDateTime,
    /// Its tokens still stored WAITING: derived ACTIVE, not yet written.
    unwritten: u64,
    /// The sweep has passed every place up to this one.
    swept_through: i64,
}

/// One line.
#[derive(Debug, Default)]
pub(crate) struct Line {
    /// Tokens in line order: the token with `seq` s sits at index s - 1, which keeps `seq`
    /// gapless by construction. Every token past `cursor.admitted_through` is WAITING (a
    /// WAITING token leaves the line only at its turn, admitted or skipped), so the waiting
    /// count and the next batch are index ranges.
    tokens: Vec<QueueToken>,
    /// The last sight of each token, by index (its issue, then `note_seen`).
    seen: Vec<OffsetDateTime>,
    token_index: HashMap<TokenValue, usize>,
    tokens_of: HashMap<UserId, Vec<usize>>,
    /// The admission records still needed, by `through`: the records of a line never overlap
    /// (the cursor only moves forward), so the first one ending at or above a place is the
    /// only one that can hold it.
    records: BTreeMap<i64, Admission>,
    /// `(expires_at, through)` of every record: the sweep takes the oldest first, and the
    /// ACTIVE count splits them at `now`.
    by_expiry: BTreeSet<(OffsetDateTime, i64)>,
    /// The sum of the records' `unwritten`.
    unwritten: u64,
    cursor: QueueCursor,
    /// Tokens skipped at their turn, ever.
    abandoned: u64,
}

impl Line {
    pub(crate) fn issue(
        &mut self,
        user: UserId,
        value: TokenValue,
        now: OffsetDateTime,
    ) -> Result<IssueOutcome, StoreError> {
        let mine = self.tokens_of.get(&user).cloned().unwrap_or_default();
        if let Some(live) = mine.iter().filter_map(|&i| self.read(i)).find(|t| t.is_live_at(now)) {
            return Ok(IssueOutcome { token: live, created: false, cursor: self.cursor });
        }
        // Checked before anything changes, so a refused issue burns no number.
        if self.token_index.contains_key(&value) {
            return Err(internal("duplicate token value"));
        }
        let seq = i64::try_from(self.tokens.len()).map_err(|_| internal("queue sequence overflow"))? + 1;
        // None of them is live: one still read ACTIVE is past its time, and is written as it
        // reads, so the user holds one live token and the record stops counting it.
        for &i in &mine {
            if let Some((through, _)) = self.covering(i) {
                self.write_expired(i, through, ExpiredReason::Ttl, None);
            }
        }
        let token = QueueToken::new_waiting(value.clone(), user, seq, now);
        let index = self.tokens.len();
        self.tokens.push(token.clone());
        self.seen.push(now);
        self.token_index.insert(value, index);
        self.tokens_of.entry(user).or_default().push(index);
        Ok(IssueOutcome { token, created: true, cursor: self.cursor })
    }

    /// THE RULE, the only statement of it (see the module docs): the record that admitted the
    /// token at index `i`, with its `through`, when the token is derived ACTIVE from it, i.e.
    /// stored WAITING at a place at or below the cursor and inside the record's
    /// `(after, through]`. `None` for every other token: it reads as stored.
    fn covering(&self, i: usize) -> Option<(i64, &Admission)> {
        let t = self.tokens.get(i)?;
        if t.status != TokenStatus::Waiting || t.seq > self.cursor.admitted_through {
            return None;
        }
        let (&through, record) = self.records.range(t.seq..).next()?;
        (record.after < t.seq).then_some((through, record))
    }

    /// The token at index `i` as it reads: as stored, or derived ACTIVE from its record.
    fn read(&self, i: usize) -> Option<QueueToken> {
        let mut token = self.tokens.get(i)?.clone();
        if let Some((_, record)) = self.covering(i) {
            token.status = TokenStatus::Active;
            token.activated_at = Some(record.at);
            token.expires_at = Some(record.expires_at);
        }
        Some(token)
    }

    /// Writes the token at `i`, derived ACTIVE from the record ending at `through`, EXPIRED
    /// for `reason` as it read: `activated_at` the record's `at`, `expires_at` the one given
    /// (a payment's time) or the record's. The record no longer counts it, and is dropped once
    /// it counts none.
    fn write_expired(&mut self, i: usize, through: i64, reason: ExpiredReason, at: Option<OffsetDateTime>) {
        let (Some(record), Some(t)) = (self.records.get_mut(&through), self.tokens.get_mut(i)) else { return };
        t.status = TokenStatus::Expired;
        t.activated_at = Some(record.at);
        t.expires_at = Some(at.unwrap_or(record.expires_at));
        t.expired_reason = Some(reason);
        record.unwritten = record.unwritten.saturating_sub(1);
        self.unwritten = self.unwritten.saturating_sub(1);
        if record.unwritten == 0 {
            self.drop_record(through);
        }
    }

    /// Drops the record ending at `through`, with whatever it still counts.
    fn drop_record(&mut self, through: i64) {
        if let Some(record) = self.records.remove(&through) {
            self.by_expiry.remove(&(record.expires_at, through));
            self.unwritten = self.unwritten.saturating_sub(record.unwritten);
        }
    }

    pub(crate) fn find_token(&self, value: &TokenValue) -> Option<QueueToken> {
        self.token_index.get(value).and_then(|&i| self.read(i))
    }

    pub(crate) fn cursor(&self) -> QueueCursor {
        self.cursor
    }

    fn issued_through(&self) -> i64 {
        i64::try_from(self.tokens.len()).unwrap_or(i64::MAX)
    }

    fn unwritten_of(&self, through: i64) -> u64 {
        self.records.get(&through).map_or(0, |r| r.unwritten)
    }

    /// ACTIVE tokens whose TTL has not run out at `now` ([`QueueToken::status_at`]: an ACTIVE
    /// token is over at its exact `expires_at`): the tokens not yet written of the records
    /// whose time is not up. The records are walked by expiry from both ends at once, the
    /// unexpired summed from the newest, the expired from the oldest, until one end crosses
    /// `now`: the walk is as long as the shorter side (a few records a sweep has not reached
    /// yet, or the few still running), whatever the tokens they hold.
    fn active_at(&self, now: OffsetDateTime) -> u64 {
        let mut records = self.by_expiry.iter();
        let (mut expired, mut live) = (0_u64, 0_u64);
        loop {
            match records.next() {
                None => return live,
                Some(&(expires_at, through)) if expires_at <= now => expired += self.unwritten_of(through),
                // This one and every one not yet walked from the back are unexpired.
                Some(_) => return self.unwritten.saturating_sub(expired),
            }
            match records.next_back() {
                None => return live,
                Some(&(expires_at, through)) if expires_at > now => live += self.unwritten_of(through),
                // This one and every one not yet walked from the front are expired.
                Some(_) => return live,
            }
        }
    }

    /// An admission tick. Without `abandon_after` it writes no token: it moves the cursor by
    /// the quota and records the tick once (see the module docs). With it, it walks the line
    /// from the cursor for presence, writing the absent EXPIRED (ABANDONED) and counting the
    /// present, which its record then admits.
    pub(crate) fn admit(&mut self, policy: &AdmissionPolicy, now: OffsetDateTime) -> AdmissionOutcome {
        let last = self.cursor.last_admission_at;
        if !policy.is_due(last, now) {
            return AdmissionOutcome::NotDue { wait: policy.next_admission_at(last, now) - now };
        }
        let active = if policy.max_active.is_some() { self.active_at(now) } else { 0 };
        let after = self.cursor.admitted_through;
        let waiting = self.issued_through().saturating_sub(after);
        let n = policy.quota(active, u64::try_from(waiting).unwrap_or(0));
        let (admitted, skipped) = if policy.abandon_after.is_some() { self.walk(policy, now, n) } else { (n, 0) };
        let through = after.saturating_add(as_i64(admitted.saturating_add(skipped)));
        if admitted > 0 {
            let expires_at = policy.expiry_for(now);
            let record = Admission { after, at: now, expires_at, unwritten: admitted, swept_through: after };
            self.records.insert(through, record);
            self.by_expiry.insert((expires_at, through));
            self.unwritten = self.unwritten.saturating_add(admitted);
            self.cursor.last_admission_at = Some(now);
        }
        self.cursor.admitted_through = through;
        self.abandoned += skipped;
        AdmissionOutcome::of(admitted, skipped)
    }

    /// The presence walk of a tick with `abandon_after`: from the cursor in line order until
    /// `n` present tokens are met or the line ends; each absent one met on the way is skipped,
    /// written EXPIRED (ABANDONED, `expires_at = now`) here. Returns (present, skipped): the
    /// places walked, which the cursor then moves over.
    fn walk(&mut self, policy: &AdmissionPolicy, now: OffsetDateTime, n: u64) -> (u64, u64) {
        let (mut admitted, mut skipped) = (0_u64, 0_u64);
        let mut i = index(self.cursor.admitted_through + 1).unwrap_or(0);
        while admitted < n && i < self.tokens.len() {
            let present = self.seen.get(i).is_some_and(|&seen| policy.is_present(seen, now));
            if present {
                admitted += 1;
            } else if let Some(t) = self.tokens.get_mut(i) {
                t.status = TokenStatus::Expired;
                t.expires_at = Some(now);
                t.expired_reason = Some(ExpiredReason::Abandoned);
                skipped += 1;
            }
            i += 1;
        }
        (admitted, skipped)
    }

    /// The sweep: at most `max` tokens derived ACTIVE whose record's time is up at `now` are
    /// written EXPIRED (TTL) as they read, the oldest record first, each from where the sweep
    /// left it; a record is dropped once it counts no token (so, at the latest, when the sweep
    /// has passed its last place).
    pub(crate) fn expire_tokens(&mut self, now: OffsetDateTime, max: u32) -> u64 {
        let max = u64::from(max);
        let mut n = 0;
        while n < max {
            let Some(&(expires_at, through)) = self.by_expiry.first() else { break };
            if expires_at > now {
                break;
            }
            let mut place = self.records.get(&through).map_or(through, |r| r.swept_through);
            while n < max && place < through && self.records.contains_key(&through) {
                place += 1;
                let Some(i) = index(place) else { continue };
                if self.tokens.get(i).is_some_and(|t| t.status == TokenStatus::Waiting) {
                    self.write_expired(i, through, ExpiredReason::Ttl, None);
                    n += 1;
                }
            }
            match self.records.get_mut(&through) {
                // Every place passed: nothing is left for it to derive.
                Some(_) if place >= through => self.drop_record(through),
                Some(record) => record.swept_through = place,
                None => {}
            }
        }
        n
    }

    /// A payment used the token up: if it reads ACTIVE (whether or not its time is up, as the
    /// other stores do), it is written EXPIRED, PAID, `expires_at = at`, once.
    pub(crate) fn use_up(&mut self, value: &TokenValue, at: OffsetDateTime) {
        let Some(&i) = self.token_index.get(value) else { return };
        if let Some((through, _)) = self.covering(i) {
            self.write_expired(i, through, ExpiredReason::Paid, Some(at));
        }
    }

    pub(crate) fn stats(&self, now: OffsetDateTime) -> QueueStats {
        let issued_through = self.issued_through();
        QueueStats {
            waiting: u64::try_from(issued_through - self.cursor.admitted_through).unwrap_or(0),
            active: self.active_at(now),
            issued_through,
            abandoned: self.abandoned,
            cursor: self.cursor,
            now,
        }
    }

    /// Presence: only tokens still in line are noted (stored WAITING above the cursor; one at
    /// or below it was admitted or skipped).
    pub(crate) fn note_seen(&mut self, values: &[TokenValue], at: OffsetDateTime) {
        for value in values {
            let Some(&i) = self.token_index.get(value) else { continue };
            let in_line = self
                .tokens
                .get(i)
                .is_some_and(|t| t.status == TokenStatus::Waiting && t.seq > self.cursor.admitted_through);
            if in_line {
                if let Some(seen) = self.seen.get_mut(i) {
                    *seen = (*seen).max(at);
                }
            }
        }
    }

    /// The draw (see `QueueStore::draw`): the line is rebuilt in its new order, which keeps
    /// "index = seq - 1".
    pub(crate) fn draw(&mut self, opens_at: OffsetDateTime, seed: u64, now: OffsetDateTime) -> DrawOutcome {
        if let Some(record) = self.cursor.draw {
            return DrawOutcome::Drawn { record, fresh: false };
        }
        if now < opens_at {
            return DrawOutcome::NotDue;
        }
        let (mut entrants, later): (Vec<usize>, Vec<usize>) =
            (0..self.tokens.len()).partition(|&i| self.tokens.get(i).is_some_and(|t| t.issued_at < opens_at));
        // The entrants in the order of their values (see `QueueStore::draw`).
        entrants.sort_by(|&a, &b| {
            let value = |i: usize| self.tokens.get(i).map(|t| t.value.as_str());
            value(a).cmp(&value(b))
        });
        let drawn = drawn_positions(seed, as_u64(entrants.len()));
        // new_index[k] = the old index of the token that takes seq k + 1.
        let mut new_order = vec![0; self.tokens.len()];
        for (old, position) in entrants.iter().zip(&drawn) {
            if let Some(slot) = usize::try_from(*position).ok().and_then(|p| new_order.get_mut(p - 1)) {
                *slot = *old;
            }
        }
        for (k, old) in later.iter().enumerate() {
            if let Some(slot) = new_order.get_mut(entrants.len() + k) {
                *slot = *old;
            }
        }
        let mut tokens = Vec::with_capacity(self.tokens.len());
        let mut seen = Vec::with_capacity(self.tokens.len());
        for (k, &old) in new_order.iter().enumerate() {
            if let (Some(t), Some(s)) = (self.tokens.get(old), self.seen.get(old)) {
                let mut t = t.clone();
                t.seq = i64::try_from(k).unwrap_or(i64::MAX) + 1;
                tokens.push(t);
                seen.push(*s);
            }
        }
        self.tokens = tokens;
        self.seen = seen;
        self.token_index = self.tokens.iter().enumerate().map(|(i, t)| (t.value.clone(), i)).collect();
        self.tokens_of.clear();
        for (i, t) in self.tokens.iter().enumerate() {
            self.tokens_of.entry(t.user_id).or_default().push(i);
        }
        // Nothing is admitted before the draw (`QueueStore::draw`), so no admission record
        // names a place that moved.
        let record = DrawRecord { at: now, entrants: as_u64(entrants.len()), seed };
        self.cursor.draw = Some(record);
        DrawOutcome::Drawn { record, fresh: true }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, reason = "test code: a failure must fail the test")]

    use std::sync::Arc;

    use domain::clock::{Clock, ManualClock};
    use domain::ids::UserId;
    use domain::queue::{AdmissionOutcome, AdmissionPolicy, ExpiredReason, QueueToken, TokenStatus, TokenValue};
    use domain::random::{Randomness, SeededRandom};
    use domain::room::RoomId;
    use domain::service::Ports;
    use time::{Duration, OffsetDateTime};

    use super::Line;
    use crate::MemoryStore;

    /// Everything a line must hold whatever was done to it, and its reads against a count of
    /// its tokens one by one.
    fn check(line: &Line, now: OffsetDateTime) {
        assert!(line.tokens.iter().all(|t| t.status != TokenStatus::Active), "no token is stored ACTIVE");
        let behind: Vec<usize> = (0..line.tokens.len())
            .filter(|&i| {
                line.tokens[i].status == TokenStatus::Waiting && line.tokens[i].seq <= line.cursor.admitted_through
            })
            .collect();
        assert!(
            behind.iter().all(|&i| line.covering(i).is_some()),
            "every WAITING token the cursor passed has its record"
        );
        assert!(
            line.tokens
                .iter()
                .skip(usize::try_from(line.cursor.admitted_through).unwrap())
                .all(|t| t.status == TokenStatus::Waiting),
            "every token past the cursor waits"
        );
        let counted: u64 = line.records.values().map(|r| r.unwritten).sum();
        assert_eq!(
            (counted, line.unwritten),
            (behind.len() as u64, behind.len() as u64),
            "records count their unwritten tokens"
        );
        assert!(line.records.values().all(|r| r.unwritten > 0), "a record that counts none is dropped");
        let keys: Vec<(OffsetDateTime, i64)> =
            line.records.iter().map(|(&through, r)| (r.expires_at, through)).collect();
        assert_eq!(
            line.by_expiry.iter().copied().collect::<std::collections::BTreeSet<_>>(),
            keys.into_iter().collect()
        );
        let active =
            (0..line.tokens.len()).filter(|&i| line.read(i).unwrap().status_at(now) == TokenStatus::Active).count();
        assert_eq!(line.active_at(now), active as u64, "the ACTIVE count is the tokens that read ACTIVE");
    }

    struct World {
        store: MemoryStore,
        clock: ManualClock,
        ports: Ports,
        random: Arc<SeededRandom>,
    }

    fn world() -> World {
        let store = MemoryStore::new();
        let clock = ManualClock::at_epoch();
        let random = Arc::new(SeededRandom::new(7));
        let ports = store.ports(Arc::new(clock.clone()), random.clone());
        World { store, clock, ports, random }
    }

    impl World {
        fn issue(&self) -> QueueToken {
            let user = UserId::from_uuid(self.random.uuid());
            self.ports.queue.issue(user, self.random.token(), self.clock.now()).unwrap().token
        }

        fn find(&self, t: &QueueToken) -> QueueToken {
            self.ports.queue.find(&t.value).unwrap().unwrap()
        }

        /// Reads `main`'s line.
        fn line<R>(&self, read: impl FnOnce(&Line) -> R) -> R {
            read(self.store.lock().line(&RoomId::main()).unwrap())
        }
    }

    fn batch(n: u32) -> AdmissionPolicy {
        AdmissionPolicy { batch: n, ..AdmissionPolicy::default() }
    }

    #[test]
    fn an_admission_of_100_000_is_one_record_and_writes_no_token() {
        let w = world();
        let tokens: Vec<QueueToken> = (0..100_000).map(|_| w.issue()).collect();
        let stored = w.line(|line| line.tokens.clone());
        w.clock.advance(Duration::seconds(1));
        let at = w.clock.now();
        assert_eq!(w.ports.queue.admit(&batch(1_000_000)).unwrap(), AdmissionOutcome::Admitted(100_000));
        w.line(|line| {
            assert_eq!(line.records.len(), 1, "one record");
            assert_eq!(line.tokens, stored, "no token written");
            assert_eq!(line.cursor.admitted_through, 100_000);
        });
        let stats = w.ports.queue.stats().unwrap();
        assert_eq!((stats.active, stats.waiting), (100_000, 0));
        for t in [&tokens[0], &tokens[49_999], &tokens[99_999]] {
            let read = w.find(t);
            assert_eq!(read.status, TokenStatus::Active);
            assert_eq!((read.activated_at, read.expires_at), (Some(at), Some(at + Duration::seconds(600))));
        }
    }

    #[test]
    fn derived_tokens_read_the_times_of_the_tick_that_admitted_them() {
        let w = world();
        let tokens: Vec<QueueToken> = (0..5).map(|_| w.issue()).collect();
        let t0 = w.clock.now();
        assert_eq!(w.ports.queue.admit(&batch(2)).unwrap(), AdmissionOutcome::Admitted(2));
        w.clock.advance(Duration::seconds(60));
        let t1 = w.clock.now();
        let shorter = AdmissionPolicy { active_ttl: Duration::seconds(30), ..batch(2) };
        assert_eq!(w.ports.queue.admit(&shorter).unwrap(), AdmissionOutcome::Admitted(2));
        let times: Vec<_> =
            tokens.iter().map(|t| w.find(t)).map(|t| (t.status, t.activated_at, t.expires_at)).collect();
        let active = TokenStatus::Active;
        assert_eq!(
            times,
            vec![
                (active, Some(t0), Some(t0 + Duration::seconds(600))),
                (active, Some(t0), Some(t0 + Duration::seconds(600))),
                (active, Some(t1), Some(t1 + Duration::seconds(30))),
                (active, Some(t1), Some(t1 + Duration::seconds(30))),
                (TokenStatus::Waiting, None, None),
            ]
        );
        let (token, cursor) = w.ports.queue.find_with_cursor(&tokens[2].value).unwrap().unwrap();
        assert_eq!((token.activated_at, cursor.admitted_through), (Some(t1), 4));
        // The second tick's tokens expire first: the count splits the records by expiry, not order.
        w.clock.set(t1 + Duration::seconds(30));
        assert_eq!(w.ports.queue.stats().unwrap().active, 2);
        w.line(|line| check(line, w.clock.now()));
    }

    #[test]
    fn a_derived_token_is_used_up_once_and_its_record_goes_with_its_last_token() {
        let w = world();
        let tokens: Vec<QueueToken> = (0..2).map(|_| w.issue()).collect();
        let t0 = w.clock.now();
        w.ports.queue.admit(&batch(2)).unwrap();
        w.clock.advance(Duration::seconds(5));
        let at = w.clock.now();
        w.ports.queue.use_up(&tokens[0].value, at).unwrap();
        let used = w.find(&tokens[0]);
        let expect = (TokenStatus::Expired, Some(t0), Some(at), Some(ExpiredReason::Paid));
        assert_eq!((used.status, used.activated_at, used.expires_at, used.expired_reason), expect);
        w.line(|line| assert_eq!(line.tokens[0], used, "written"));
        assert_eq!(w.ports.queue.stats().unwrap().active, 1);
        w.ports.queue.use_up(&tokens[0].value, at + Duration::seconds(1)).unwrap();
        assert_eq!(w.find(&tokens[0]), used, "a second use-up does nothing");
        assert_eq!(w.line(|line| (line.records.len(), line.unwritten)), (1, 1));
        w.ports.queue.use_up(&tokens[1].value, at).unwrap();
        assert_eq!(w.line(|line| (line.records.len(), line.unwritten)), (0, 0), "no sweep needed");
        assert_eq!(w.ports.queue.expire_tokens(100).unwrap(), 0);
        w.line(|line| check(line, w.clock.now()));
    }

    #[test]
    fn the_sweep_expires_on_the_stores_clock_and_drops_the_records_it_finished() {
        let w = world();
        let tokens: Vec<QueueToken> = (0..10).map(|_| w.issue()).collect();
        let t0 = w.clock.now();
        w.ports.queue.admit(&batch(5)).unwrap();
        w.clock.advance(Duration::seconds(60));
        w.ports.queue.admit(&batch(5)).unwrap();
        w.ports.queue.use_up(&tokens[1].value, w.clock.now()).unwrap();
        w.clock.set(t0 + Duration::seconds(600) - Duration::microseconds(1));
        assert_eq!(w.ports.queue.expire_tokens(100).unwrap(), 0);
        assert_eq!(w.line(|line| line.records.len()), 2);

        w.clock.set(t0 + Duration::seconds(600));
        assert_eq!(w.ports.queue.expire_tokens(3).unwrap(), 3, "at most the limit");
        assert_eq!(w.line(|line| line.records.len()), 2, "the first is not finished");
        assert_eq!(w.ports.queue.expire_tokens(3).unwrap(), 1);
        assert_eq!(w.line(|line| line.records.len()), 1, "the first is finished and dropped");
        for t in tokens.iter().take(5).enumerate().filter(|(i, _)| *i != 1).map(|(_, t)| t) {
            let stored = w.line(|line| line.tokens[usize::try_from(t.seq - 1).unwrap()].clone());
            let expect = (TokenStatus::Expired, Some(t0), Some(t0 + Duration::seconds(600)), Some(ExpiredReason::Ttl));
            assert_eq!((stored.status, stored.activated_at, stored.expires_at, stored.expired_reason), expect);
        }
        assert_eq!(w.find(&tokens[5]).status, TokenStatus::Active);

        w.clock.advance(Duration::seconds(60));
        assert_eq!(w.ports.queue.expire_tokens(100).unwrap(), 5);
        assert_eq!(w.line(|line| (line.records.len(), line.by_expiry.len(), line.unwritten)), (0, 0, 0));
        assert_eq!(w.ports.queue.expire_tokens(100).unwrap(), 0);
        w.line(|line| check(line, w.clock.now()));
    }

    #[test]
    fn a_rejoin_writes_the_lapsed_token_and_its_record_stops_counting_it() {
        let w = world();
        let user = UserId::from_uuid(w.random.uuid());
        let first = w.ports.queue.issue(user, w.random.token(), w.clock.now()).unwrap().token;
        let t0 = w.clock.now();
        w.ports.queue.admit(&batch(1)).unwrap();
        w.clock.advance(Duration::seconds(600));
        let again = w.ports.queue.issue(user, w.random.token(), w.clock.now()).unwrap();
        assert!(again.created);
        let old = w.line(|line| line.tokens[0].clone());
        let expect = (TokenStatus::Expired, Some(t0), Some(t0 + Duration::seconds(600)), Some(ExpiredReason::Ttl));
        assert_eq!((old.status, old.activated_at, old.expires_at, old.expired_reason), expect);
        assert_eq!(w.find(&first), old);
        assert_eq!(w.line(|line| line.records.len()), 0);
        w.line(|line| check(line, w.clock.now()));
    }

    #[test]
    fn records_do_not_grow_with_the_ticks() {
        let w = world();
        let policy = AdmissionPolicy { batch: 3, interval: Duration::seconds(1), ..AdmissionPolicy::default() };
        for _ in 0..2_000 {
            for _ in 0..3 {
                w.issue();
            }
            assert_eq!(w.ports.queue.admit(&policy).unwrap(), AdmissionOutcome::Admitted(3));
            w.ports.queue.expire_tokens(1_000).unwrap();
            w.clock.advance(Duration::seconds(1));
        }
        // One record per tick whose tokens may still read ACTIVE: 600 s of ticks a second.
        assert_eq!(w.line(|line| line.records.len()), 600);
        w.clock.advance(Duration::seconds(600));
        w.ports.queue.expire_tokens(u32::MAX).unwrap();
        assert_eq!(w.line(|line| line.records.len()), 0);
        w.line(|line| check(line, w.clock.now()));
    }

    /// Every operation in a long random mix, the line checked after each: its records, counts
    /// and reads against the tokens read one by one.
    #[test]
    fn the_records_stay_exact_through_a_random_mix_of_operations() {
        let random = SeededRandom::new(11);
        let roll = |n: u64| u64::from_le_bytes(random.uuid().as_bytes()[..8].try_into().unwrap()) % n;
        // What the mix did, over all runs: admitted, skipped, used up, swept, re-joins that wrote.
        let mut did = [0_u64; 5];
        for run in 0..20 {
            let mut line = Line::default();
            let mut now = OffsetDateTime::UNIX_EPOCH;
            let users: Vec<UserId> = (0..12).map(|_| UserId::from_uuid(random.uuid())).collect();
            let mut values: Vec<TokenValue> = Vec::new();
            for _ in 0..400 {
                let before = line.unwritten;
                match roll(8) {
                    0 | 1 => {
                        let value = random.token();
                        let user = users[usize::try_from(roll(12)).unwrap()];
                        if line.issue(user, value.clone(), now).unwrap().created {
                            values.push(value);
                        }
                        did[4] += before - line.unwritten;
                    }
                    2 => {
                        let policy = AdmissionPolicy {
                            batch: u32::try_from(roll(4)).unwrap(),
                            interval: Duration::seconds(1),
                            active_ttl: Duration::seconds(i64::try_from(1 + roll(40)).unwrap()),
                            max_active: (roll(2) == 0).then(|| u32::try_from(roll(6)).unwrap()),
                            abandon_after: (run % 2 == 0).then(|| Duration::seconds(5)),
                        };
                        match line.admit(&policy, now) {
                            AdmissionOutcome::Admitted(n) => did[0] += n,
                            AdmissionOutcome::AdmittedPresent { admitted, abandoned } => {
                                did[0] += admitted;
                                did[1] += abandoned;
                            }
                            _ => {}
                        }
                    }
                    3 | 4 => now += Duration::seconds(i64::try_from(roll(6)).unwrap()),
                    5 if !values.is_empty() => {
                        let value = &values[usize::try_from(roll(values.len() as u64)).unwrap()];
                        line.use_up(value, now);
                        did[2] += before - line.unwritten;
                    }
                    6 => did[3] += line.expire_tokens(now, u32::try_from(roll(4)).unwrap()),
                    _ if !values.is_empty() => {
                        let value = values[usize::try_from(roll(values.len() as u64)).unwrap()].clone();
                        line.note_seen(&[value], now);
                    }
                    _ => {}
                }
                check(&line, now);
            }
        }
        assert!(did.iter().all(|&n| n > 10), "every path was taken: {did:?}");
    }
}
