//! One waiting line in memory (`main`'s, or a room's): its tokens, its cursor, its draw and
//! the last sight of each WAITING token. Every method runs under the store's lock, so each is
//! atomic and serialised against all others; the rules are the domain's functions
//! (`is_live_at`, `status_at`, the admission policy and `is_present`, `drawn_positions`).

use std::collections::{BTreeSet, HashMap};

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

fn limit(n: u32) -> usize {
    usize::try_from(n).unwrap_or(usize::MAX)
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
    /// The stored-ACTIVE tokens by `(expires_at, index)`: expiry takes the oldest first and the
    /// unexpired ones are a range, so neither scans the line.
    active: BTreeSet<(OffsetDateTime, usize)>,
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
        if let Some(live) = mine.iter().filter_map(|&i| self.tokens.get(i)).find(|t| t.is_live_at(now)) {
            return Ok(IssueOutcome { token: live.clone(), created: false, cursor: self.cursor });
        }
        // Checked before anything changes, so a refused issue burns no number.
        if self.token_index.contains_key(&value) {
            return Err(internal("duplicate token value"));
        }
        let seq = i64::try_from(self.tokens.len()).map_err(|_| internal("queue sequence overflow"))? + 1;
        for &i in &mine {
            self.expire_at(i, None, ExpiredReason::Ttl);
        }
        let token = QueueToken::new_waiting(value.clone(), user, seq, now);
        let index = self.tokens.len();
        self.tokens.push(token.clone());
        self.seen.push(now);
        self.token_index.insert(value, index);
        self.tokens_of.entry(user).or_default().push(index);
        Ok(IssueOutcome { token, created: true, cursor: self.cursor })
    }

    /// Marks the token at `i` EXPIRED if it is stored ACTIVE, with `expires_at = at` when
    /// given (a payment used it up) or its own expiry kept (its time ran out).
    fn expire_at(&mut self, i: usize, at: Option<OffsetDateTime>, reason: ExpiredReason) -> bool {
        let Some(t) = self.tokens.get_mut(i) else { return false };
        if t.status != TokenStatus::Active {
            return false;
        }
        if let Some(exp) = t.expires_at {
            self.active.remove(&(exp, i));
        }
        t.status = TokenStatus::Expired;
        t.expired_reason = Some(reason);
        if at.is_some() {
            t.expires_at = at;
        }
        true
    }

    pub(crate) fn find_token(&self, value: &TokenValue) -> Option<QueueToken> {
        self.token_index.get(value).and_then(|&i| self.tokens.get(i)).cloned()
    }

    pub(crate) fn cursor(&self) -> QueueCursor {
        self.cursor
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
        let expires_at = policy.expiry_for(now);
        let (mut admitted, mut skipped) = (0_u64, 0_u64);
        let mut i = usize::try_from(self.cursor.admitted_through).unwrap_or(0);
        while admitted < n && i < self.tokens.len() {
            let present = self.seen.get(i).is_some_and(|&seen| policy.is_present(seen, now));
            if let Some(t) = self.tokens.get_mut(i) {
                if present {
                    t.status = TokenStatus::Active;
                    t.activated_at = Some(now);
                    t.expires_at = Some(expires_at);
                    self.active.insert((expires_at, i));
                    admitted += 1;
                } else {
                    t.status = TokenStatus::Expired;
                    t.expires_at = Some(now);
                    t.expired_reason = Some(ExpiredReason::Abandoned);
                    skipped += 1;
                }
            }
            i += 1;
        }
        self.cursor.admitted_through = i64::try_from(i).unwrap_or(i64::MAX);
        self.abandoned += skipped;
        if admitted > 0 {
            self.cursor.last_admission_at = Some(now);
        }
        AdmissionOutcome::of(admitted, skipped)
    }

    pub(crate) fn expire_tokens(&mut self, now: OffsetDateTime, max: u32) -> u64 {
        let due: Vec<usize> =
            self.active.iter().take_while(|(exp, _)| *exp <= now).take(limit(max)).map(|(_, i)| *i).collect();
        as_u64(due.into_iter().filter(|&i| self.expire_at(i, None, ExpiredReason::Ttl)).count())
    }

    pub(crate) fn use_up(&mut self, value: &TokenValue, at: OffsetDateTime) {
        if let Some(&i) = self.token_index.get(value) {
            self.expire_at(i, Some(at), ExpiredReason::Paid);
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

    pub(crate) fn note_seen(&mut self, values: &[TokenValue], at: OffsetDateTime) {
        for value in values {
            let Some(&i) = self.token_index.get(value) else { continue };
            if self.tokens.get(i).is_some_and(|t| t.status == TokenStatus::Waiting) {
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
        // Nothing is ACTIVE before the draw (nothing is admitted before it), so `active` holds
        // no index to move.
        let record = DrawRecord { at: now, entrants: as_u64(entrants.len()), seed };
        self.cursor.draw = Some(record);
        DrawOutcome::Drawn { record, fresh: true }
    }
}
