//! The waiting room: queue tokens, their life cycle, the admission policy and its live
//! settings.
//!
//! A token is WAITING when issued, ACTIVE once an admission tick lets it in, and EXPIRED when
//! its TTL runs out or a payment uses it up. An ACTIVE token whose `expires_at` has passed
//! *reads* as EXPIRED at once, whether or not the expiry task has run yet
//! ([`QueueToken::status_at`]).
//!
//! Every token carries a gapless issue sequence number `seq`. Admission is strictly in `seq`
//! order and a WAITING token leaves the line only by admission (a payment uses up only the
//! ACTIVE token that paid, never a WAITING one), so the WAITING tokens issued before token `t`
//! are exactly those with `admitted_through < seq < t.seq`, and
//! `position = t.seq - admitted_through`: one subtraction, whatever the length of the line. For
//! the same reason the number waiting is `issued_through - admitted_through`.

use std::fmt;

use thiserror::Error;
use time::{Duration, OffsetDateTime};

use crate::ids::UserId;
use crate::room::RoomId;

/// The opaque bearer value of a queue token: 64 lower-case hex digits (256 random bits, of
/// which a store may replace the last 64 with where it keeps the token, as Redis does with
/// its `seq`), after `<room>.` for a room other than `main`, so a token names its line and any
/// instance finds it without a lookup.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct TokenValue(String);

/// A bearer string that cannot be a token of ours.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Error)]
#[error("malformed queue token")]
pub struct MalformedToken;

impl TokenValue {
    /// Length of a token in hex digits.
    pub const LEN: usize = 64;

    /// Parses a bearer string. Only the shape is checked here; whether the token exists is the
    /// queue store's business.
    ///
    /// # Errors
    /// [`MalformedToken`] unless `s` is 64 lower-case hex digits (a token of `main`) or a room
    /// id other than `main`, a dot and 64 lower-case hex digits (a token of that room).
    pub fn parse(s: &str) -> Result<Self, MalformedToken> {
        let secret = match s.split_once('.') {
            Some((room, secret)) => {
                let room = RoomId::parse(room).map_err(|_| MalformedToken)?;
                if room.is_main() {
                    return Err(MalformedToken);
                }
                secret
            }
            None => s,
        };
        let ok = secret.len() == Self::LEN && secret.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'));
        if ok {
            Ok(Self(s.to_owned()))
        } else {
            Err(MalformedToken)
        }
    }

    /// The same secret as a token of `room`: `<room>.<hex>`, or the bare hex for `main`, so
    /// every token of `main` reads as it always did.
    #[must_use]
    pub fn in_room(self, room: &RoomId) -> Self {
        if room.is_main() {
            return self;
        }
        Self(format!("{}.{}", room.as_str(), self.secret()))
    }

    /// The id of the room this token waits in as the value spells it (`main` for a bare
    /// value), without parsing or allocating: the poll path asks this of every token.
    #[must_use]
    pub fn room_name(&self) -> &str {
        self.0.split_once('.').map_or(RoomId::MAIN, |(room, _)| room)
    }

    /// The 64 hex digits of the secret, without the room's prefix.
    #[must_use]
    pub fn secret(&self) -> &str {
        self.0.rsplit_once('.').map_or(self.0.as_str(), |(_, secret)| secret)
    }

    /// Whether this token waits in `room`.
    #[must_use]
    pub fn is_in(&self, room: &RoomId) -> bool {
        self.room_name() == room.as_str()
    }

    /// The room this token waits in (the value names it; see [`TokenValue::in_room`]).
    #[must_use]
    pub fn room(&self) -> RoomId {
        self.0.split_once('.').and_then(|(room, _)| RoomId::parse(room).ok()).unwrap_or_else(RoomId::main)
    }

    /// Builds a token from 32 random bytes.
    #[must_use]
    pub fn from_bytes(bytes: [u8; 32]) -> Self {
        Self(hex::encode(bytes))
    }

    /// The token as sent to and by clients.
    #[must_use]
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

// Tokens are bearer credentials: never print one whole in logs.
impl fmt::Debug for TokenValue {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "TokenValue({}…)", &self.0.get(..8).unwrap_or(""))
    }
}

spelled_enum! {
    /// A token's state as stored. Spelled as in the contract (`WAITING`, ...) by `strum`, in
    /// storage and on the wire alike.
    pub enum TokenStatus {
        /// In line, not yet admitted.
        Waiting,
        /// Admitted: may browse, reserve and pay until `expires_at`.
        Active,
        /// TTL reached or used up by a payment. Final.
        Expired,
    }
}

spelled_enum! {
    /// Why a token is EXPIRED (`expiredReason` on the wire).
    pub enum ExpiredReason {
        /// Its ACTIVE time ran out.
        Ttl,
        /// A payment used it up.
        Paid,
        /// Its buyer left: it was skipped at its turn (see [`AdmissionPolicy::abandon_after`]).
        Abandoned,
    }
}

/// A queue token as stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QueueToken {
    /// The bearer value.
    pub value: TokenValue,
    /// Whose place in line this is.
    pub user_id: UserId,
    /// Gapless issue sequence number (1, 2, 3, ...): the order of the line.
    pub seq: i64,
    /// Stored status; read it through [`QueueToken::status_at`].
    pub status: TokenStatus,
    /// When the token was issued.
    pub issued_at: OffsetDateTime,
    /// When an admission tick activated it (on the store's clock).
    pub activated_at: Option<OffsetDateTime>,
    /// When an ACTIVE token stops being valid (set on activation; set to the payment time when
    /// a payment uses the token up).
    pub expires_at: Option<OffsetDateTime>,
    /// Why it is EXPIRED, as stored (`None` while live, and for an ACTIVE token whose TTL ran
    /// out before the expiry sweep marked it); read it through [`QueueToken::expired_reason_at`].
    pub expired_reason: Option<ExpiredReason>,
}

impl QueueToken {
    /// A new WAITING token.
    #[must_use]
    pub fn new_waiting(value: TokenValue, user_id: UserId, seq: i64, issued_at: OffsetDateTime) -> Self {
        Self {
            value,
            user_id,
            seq,
            status: TokenStatus::Waiting,
            issued_at,
            activated_at: None,
            expires_at: None,
            expired_reason: None,
        }
    }

    /// Why the token is EXPIRED as of `now`, `None` while it is live: the stored reason, else
    /// the TTL (an ACTIVE token read past `expires_at`).
    #[must_use]
    pub fn expired_reason_at(&self, now: OffsetDateTime) -> Option<ExpiredReason> {
        (self.status_at(now) == TokenStatus::Expired).then(|| self.expired_reason.unwrap_or(ExpiredReason::Ttl))
    }

    /// The status as of `now`: an ACTIVE token at or past `expires_at` is EXPIRED even if the
    /// expiry task has not run.
    #[must_use]
    pub fn status_at(&self, now: OffsetDateTime) -> TokenStatus {
        match (self.status, self.expires_at) {
            (TokenStatus::Active, Some(exp)) if now >= exp => TokenStatus::Expired,
            (status, _) => status,
        }
    }

    /// Whether the token still holds a place (WAITING, or ACTIVE and unexpired) as of `now`.
    #[must_use]
    pub fn is_live_at(&self, now: OffsetDateTime) -> bool {
        self.status_at(now) != TokenStatus::Expired
    }
}

/// The shared state of the line.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct QueueCursor {
    /// Every token with `seq <= admitted_through` has been admitted (or expired since).
    pub admitted_through: i64,
    /// When the last admission tick that admitted anything ran (store clock).
    pub last_admission_at: Option<OffsetDateTime>,
    /// Which line this is. A store that can lose its line while the service runs (Redis
    /// restarted without persistence) gives each line it creates a new epoch, so a token or a
    /// cursor remembered from one epoch is known stale under another; `0` before the first
    /// line, and always for a store whose line lives as long as its data (PostgreSQL, memory).
    pub epoch: u64,
    /// The draw of the line's pre-queue, once it happened (see [`QueueStore::draw`]).
    ///
    /// [`QueueStore::draw`]: crate::ports::QueueStore::draw
    pub draw: Option<DrawRecord>,
}

/// A recorded draw: when it ran (store clock), how many pre-queued tokens it ordered, and the
/// seed of the order ([`crate::room::drawn_positions`] recomputes it).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct DrawRecord {
    /// When the draw ran, on the store's clock.
    pub at: OffsetDateTime,
    /// How many tokens it ordered: they hold positions 1..=entrants.
    pub entrants: u64,
    /// The seed of the order.
    pub seed: u64,
}

/// How the waiting room lets people in: N, M, the ACTIVE TTL and the optional cap.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AdmissionPolicy {
    /// N: at most this many tokens per admission tick, counted over all instances.
    pub batch: u32,
    /// M: admission ticks are at least this far apart.
    pub interval: Duration,
    /// How long an ACTIVE token stays valid after activation.
    pub active_ttl: Duration,
    /// Optional cap on the number of ACTIVE tokens at once.
    pub max_active: Option<u32>,
    /// A WAITING token not seen (issued, re-joined or polled) for this long has left: at its
    /// turn it is skipped ([`ExpiredReason::Abandoned`]) and does not count against N. `None`:
    /// places are kept for ever.
    pub abandon_after: Option<Duration>,
}

impl Default for AdmissionPolicy {
    /// The contract's defaults: N = 100 every M = 60 s, ACTIVE for 600 s, no cap.
    fn default() -> Self {
        Self {
            batch: 100,
            interval: Duration::seconds(60),
            active_ttl: Duration::seconds(600),
            max_active: None,
            abandon_after: None,
        }
    }
}

impl AdmissionPolicy {
    /// Whether an admission tick may run at `now`, given when the last one that admitted
    /// anything ran. Ticks that admit nothing do not count, so an idle waiting room lets a
    /// newcomer in at the next check rather than up to M later. Stores that decide this inside
    /// their atomic section in their own language (Lua on Redis) restate exactly this.
    #[must_use]
    pub fn is_due(&self, last_admission_at: Option<OffsetDateTime>, now: OffsetDateTime) -> bool {
        last_admission_at.is_none_or(|last| now >= last + self.interval)
    }

    /// When the next admission tick may run.
    #[must_use]
    pub fn next_admission_at(&self, last_admission_at: Option<OffsetDateTime>, now: OffsetDateTime) -> OffsetDateTime {
        match last_admission_at {
            Some(last) if last + self.interval > now => last + self.interval,
            _ => now,
        }
    }

    /// How many tokens one tick admits, given how many are ACTIVE now and how many wait.
    #[must_use]
    pub fn quota(&self, active_now: u64, waiting: u64) -> u64 {
        let by_cap = self.max_active.map_or(u64::MAX, |cap| u64::from(cap).saturating_sub(active_now));
        u64::from(self.batch).min(by_cap).min(waiting)
    }

    /// Whether a WAITING token last seen (issued, re-joined or polled) at `last_seen` is still
    /// present at `now`: always without [`AdmissionPolicy::abandon_after`], else while
    /// `now < last_seen + abandon_after`. Stores that skip absent tokens inside their atomic
    /// admission restate exactly this.
    #[must_use]
    pub fn is_present(&self, last_seen: OffsetDateTime, now: OffsetDateTime) -> bool {
        self.abandon_after.is_none_or(|after| now < last_seen + after)
    }

    /// The token's expiry when activated at `at`.
    #[must_use]
    pub fn expiry_for(&self, activated_at: OffsetDateTime) -> OffsetDateTime {
        activated_at + self.active_ttl
    }

    /// Estimated seconds until a WAITING token at `position` (1 = next) is admitted: the time
    /// to the next tick plus one interval for each full batch ahead of it. Rounded up; a lower
    /// bound when `max_active` holds admissions back.
    #[must_use]
    pub fn estimated_wait_secs(&self, position: i64, cursor: &QueueCursor, now: OffsetDateTime) -> i64 {
        if position <= 0 {
            return 0;
        }
        let next = self.next_admission_at(cursor.last_admission_at, now);
        let batch = i64::from(self.batch.max(1));
        let ticks_ahead = (position - 1) / batch;
        let wait = (next - now) + self.interval * i32::try_from(ticks_ahead).unwrap_or(i32::MAX);
        ceil_secs(wait)
    }
}

fn ceil_secs(d: Duration) -> i64 {
    let whole = d.whole_seconds();
    if d > Duration::seconds(whole) {
        whole + 1
    } else {
        whole
    }
}

/// The waiting room's live settings: what an operator can change while it runs. Every
/// instance reads them from the store (see `SettingsStore`), so a change applies everywhere
/// and survives restarts; configuration only gives the values in force until the first change.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct QueueSettings {
    /// While `true` nobody is admitted (tokens are still issued and polled).
    pub paused: bool,
    /// N, M, TTL and the cap.
    pub admission: AdmissionPolicy,
}

/// One line for logs: `paused=false batch=100 interval=60s ttl=600s max_active=none`.
impl fmt::Display for QueueSettings {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let a = &self.admission;
        write!(
            f,
            "paused={} batch={} interval={}s ttl={}s max_active=",
            self.paused,
            a.batch,
            a.interval.whole_seconds(),
            a.active_ttl.whole_seconds()
        )?;
        match a.max_active {
            Some(cap) => write!(f, "{cap}"),
            None => f.write_str("none"),
        }
    }
}

/// Bounds of the operator's settings (contract, "Operator API").
pub mod limits {
    /// `admitBatch`.
    pub const BATCH: std::ops::RangeInclusive<u32> = 1..=100_000;
    /// `admitIntervalSecs`.
    pub const INTERVAL_SECS: std::ops::RangeInclusive<i64> = 1..=86_400;
    /// `activeTtlSecs`.
    pub const ACTIVE_TTL_SECS: std::ops::RangeInclusive<i64> = 10..=86_400;
    /// `QUEUE_ACTIVE_TTL_SECS`, the TTL in force until an operator changes it: down to one
    /// second, so that tests and demos can watch a token expire, where an operator's change is
    /// held to [`ACTIVE_TTL_SECS`] (the contract's range).
    pub const STARTING_ACTIVE_TTL_SECS: std::ops::RangeInclusive<i64> = 1..=86_400;
    /// `maxActive`.
    pub const MAX_ACTIVE: std::ops::RangeInclusive<u32> = 1..=10_000_000;
}

/// A change an operator asks for; `None` leaves a setting as it is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct SettingsPatch {
    paused: Option<bool>,
    batch: Option<u32>,
    interval: Option<Duration>,
    active_ttl: Option<Duration>,
    max_active: Option<Option<u32>>,
}

/// A setting outside its bounds; the text names it and its range.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[error("{0}")]
pub struct InvalidSetting(pub String);

/// A change as an operator asks for it, before validation: each field names one setting, `None`
/// leaves it as it is (and `max_active: Some(None)` lifts the cap).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct SettingsChange {
    /// Pause (`true`) or resume (`false`) admission.
    pub paused: Option<bool>,
    /// N, within [`limits::BATCH`].
    pub admit_batch: Option<i64>,
    /// M in seconds, within [`limits::INTERVAL_SECS`].
    pub admit_interval_secs: Option<i64>,
    /// The ACTIVE TTL in seconds, within [`limits::ACTIVE_TTL_SECS`].
    pub active_ttl_secs: Option<i64>,
    /// The cap, within [`limits::MAX_ACTIVE`], or `Some(None)` for none.
    pub max_active: Option<Option<i64>>,
}

impl SettingsPatch {
    /// Validates a change against [`limits`].
    ///
    /// # Errors
    /// [`InvalidSetting`] naming the first value out of bounds, or when nothing would change.
    pub fn new(change: SettingsChange) -> Result<Self, InvalidSetting> {
        fn within<T>(name: &str, v: i64, range: &std::ops::RangeInclusive<T>) -> Result<T, InvalidSetting>
        where
            T: PartialOrd + Copy + fmt::Display + TryFrom<i64>,
        {
            T::try_from(v)
                .ok()
                .filter(|x| range.contains(x))
                .ok_or_else(|| InvalidSetting(format!("{name} must be between {} and {}", range.start(), range.end())))
        }
        if change == SettingsChange::default() {
            return Err(InvalidSetting("name at least one setting to change".into()));
        }
        let SettingsChange {
            paused,
            admit_batch: batch,
            admit_interval_secs: interval_secs,
            active_ttl_secs,
            max_active,
        } = change;
        Ok(Self {
            paused,
            batch: batch.map(|v| within("admitBatch", v, &limits::BATCH)).transpose()?,
            interval: interval_secs
                .map(|v| within("admitIntervalSecs", v, &limits::INTERVAL_SECS).map(Duration::seconds))
                .transpose()?,
            active_ttl: active_ttl_secs
                .map(|v| within("activeTtlSecs", v, &limits::ACTIVE_TTL_SECS).map(Duration::seconds))
                .transpose()?,
            max_active: max_active
                .map(|m| m.map(|v| within("maxActive", v, &limits::MAX_ACTIVE)).transpose())
                .transpose()?,
        })
    }

    /// The settings after this change.
    #[must_use]
    pub fn apply(&self, to: QueueSettings) -> QueueSettings {
        let a = to.admission;
        QueueSettings {
            paused: self.paused.unwrap_or(to.paused),
            admission: AdmissionPolicy {
                batch: self.batch.unwrap_or(a.batch),
                interval: self.interval.unwrap_or(a.interval),
                active_ttl: self.active_ttl.unwrap_or(a.active_ttl),
                max_active: self.max_active.unwrap_or(a.max_active),
                abandon_after: a.abandon_after,
            },
        }
    }
}

/// The line as a store sees it at one instant (`GET /admin/queue`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct QueueStats {
    /// WAITING tokens: `issued_through - admitted_through`.
    pub waiting: u64,
    /// ACTIVE tokens whose TTL has not run out at `now`.
    pub active: u64,
    /// The `seq` of the last token issued (0: none yet).
    pub issued_through: i64,
    /// WAITING tokens skipped at their turn because their buyer had left, ever.
    pub abandoned: u64,
    pub cursor: QueueCursor,
    /// The store's clock at the read (admission is timed on it).
    pub now: OffsetDateTime,
}

/// The waiting room for an operator: counts, cursor, settings in force, next admission.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct QueueState {
    /// Counts and cursor.
    pub stats: QueueStats,
    /// The settings in force.
    pub settings: QueueSettings,
    /// The earliest time of the next admission; `None` while paused.
    pub next_admission_at: Option<OffsetDateTime>,
}

impl QueueState {
    /// Combines a store's stats with the settings in force.
    #[must_use]
    pub fn of(stats: QueueStats, settings: QueueSettings) -> Self {
        let next =
            (!settings.paused).then(|| settings.admission.next_admission_at(stats.cursor.last_admission_at, stats.now));
        Self { stats, settings, next_admission_at: next }
    }
}

/// Bounds of the pace at which a client should poll its WAITING token.
pub const POLL_AFTER_SECS: std::ops::RangeInclusive<i64> = 1..=20;

/// What a client sees of its token.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TokenView {
    pub token: QueueToken,
    /// The status as of the read (see [`QueueToken::status_at`]).
    pub status: TokenStatus,
    /// 1 + the WAITING tokens issued before it; 0 unless WAITING.
    pub position: i64,
    /// Seconds until admission, 0 unless WAITING.
    pub estimated_wait_secs: i64,
    /// Whether admission is paused by an operator.
    pub paused: bool,
    /// When to poll again, in seconds (0: no need, the token is no longer WAITING): a quarter
    /// of the estimated wait, within [`POLL_AFTER_SECS`], so a line of a million polls at a
    /// pace the server can hold while the front of the line still sees its turn promptly.
    pub poll_after_secs: i64,
    /// `Some(opens_at)` while the token waits for its room's order to be drawn (or, without a
    /// draw, for the opening): it has no position and no estimated wait yet (`null` on the
    /// wire, and `position`/`estimated_wait_secs` are 0 here).
    pub draw_at: Option<OffsetDateTime>,
    /// Why it is EXPIRED, `None` unless it is.
    pub expired_reason: Option<ExpiredReason>,
}

impl TokenView {
    /// Builds the view of `token` at `now` under `settings` (a token of `main`).
    #[must_use]
    pub fn of(token: QueueToken, cursor: &QueueCursor, settings: &QueueSettings, now: OffsetDateTime) -> Self {
        Self::build(token, cursor, settings, None, now)
    }

    /// Builds the view of a token of `room` at `now`: as [`TokenView::of`] under the room's
    /// settings, except that a WAITING token has no position yet while its order is still to
    /// be drawn ([`Room::order_pending_at`]).
    ///
    /// [`Room::order_pending_at`]: crate::room::Room::order_pending_at
    #[must_use]
    pub fn in_room(token: QueueToken, cursor: &QueueCursor, room: &crate::room::Room, now: OffsetDateTime) -> Self {
        Self::build(token, cursor, &room.settings, room.order_pending_at(cursor, now), now)
    }

    fn build(
        token: QueueToken,
        cursor: &QueueCursor,
        settings: &QueueSettings,
        pending: Option<OffsetDateTime>,
        now: OffsetDateTime,
    ) -> Self {
        let status = token.status_at(now);
        let waiting = status == TokenStatus::Waiting;
        let draw_at = pending.filter(|_| waiting);
        let position = if waiting && draw_at.is_none() { (token.seq - cursor.admitted_through).max(1) } else { 0 };
        let estimated_wait_secs = settings.admission.estimated_wait_secs(position, cursor, now);
        let poll_after_secs = match (waiting, settings.paused, draw_at) {
            (false, _, _) => 0,
            (true, _, Some(at)) => (ceil_secs(at - now) / 4).clamp(*POLL_AFTER_SECS.start(), *POLL_AFTER_SECS.end()),
            (true, true, None) => *POLL_AFTER_SECS.end(),
            (true, false, None) => (estimated_wait_secs / 4).clamp(*POLL_AFTER_SECS.start(), *POLL_AFTER_SECS.end()),
        };
        let expired_reason = token.expired_reason_at(now);
        Self {
            token,
            status,
            position,
            estimated_wait_secs,
            paused: settings.paused,
            poll_after_secs,
            draw_at,
            expired_reason,
        }
    }
}

/// The outcome of one admission tick.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AdmissionOutcome {
    /// The tick ran and activated this many tokens (possibly 0 if none waited or the cap held),
    /// skipping nobody.
    Admitted(u64),
    /// The tick ran, activated `admitted` present tokens and skipped `abandoned` absent ones
    /// (only with [`AdmissionPolicy::abandon_after`]; a store answers [`Self::Admitted`] when
    /// it skipped nobody).
    AdmittedPresent {
        /// Tokens activated.
        admitted: u64,
        /// Tokens skipped, now EXPIRED with [`ExpiredReason::Abandoned`].
        abandoned: u64,
    },
    /// The last admission was less than one interval ago (perhaps by another instance); the
    /// next one is due in `wait`, measured on the store's clock.
    NotDue {
        /// Time until the next admission is due.
        wait: Duration,
    },
    /// Another instance is admitting right now.
    Busy,
    /// An operator paused admission.
    Paused,
}

impl AdmissionOutcome {
    /// Tokens this tick activated.
    #[must_use]
    pub fn admitted(&self) -> u64 {
        match *self {
            Self::Admitted(n) | Self::AdmittedPresent { admitted: n, .. } => n,
            Self::NotDue { .. } | Self::Busy | Self::Paused => 0,
        }
    }

    /// Absent tokens this tick skipped.
    #[must_use]
    pub fn abandoned(&self) -> u64 {
        match *self {
            Self::AdmittedPresent { abandoned, .. } => abandoned,
            _ => 0,
        }
    }

    /// The outcome of a tick that admitted `admitted` and skipped `abandoned`.
    #[must_use]
    pub fn of(admitted: u64, abandoned: u64) -> Self {
        if abandoned == 0 {
            Self::Admitted(admitted)
        } else {
            Self::AdmittedPresent { admitted, abandoned }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::str::FromStr as _;

    use super::*;

    fn t0() -> OffsetDateTime {
        OffsetDateTime::from_unix_timestamp(1_893_456_000).unwrap()
    }

    fn policy() -> AdmissionPolicy {
        AdmissionPolicy {
            batch: 3,
            interval: Duration::seconds(60),
            active_ttl: Duration::seconds(600),
            max_active: None,
            abandon_after: None,
        }
    }

    fn settings() -> QueueSettings {
        QueueSettings { paused: false, admission: policy() }
    }

    fn token(seq: i64) -> QueueToken {
        QueueToken::new_waiting(TokenValue::from_bytes([7; 32]), UserId::from_uuid(uuid::Uuid::nil()), seq, t0())
    }

    #[test]
    fn token_value_parses_only_64_lower_hex() {
        let v = TokenValue::from_bytes([0xab; 32]);
        assert_eq!(TokenValue::parse(v.as_str()), Ok(v.clone()));
        assert_eq!(TokenValue::parse(&v.as_str().to_uppercase()), Err(MalformedToken));
        assert_eq!(TokenValue::parse("abc"), Err(MalformedToken));
        assert_eq!(TokenValue::parse(&format!("{}g", &v.as_str()[1..])), Err(MalformedToken));
        assert_eq!(TokenValue::parse(""), Err(MalformedToken));
    }

    #[test]
    fn token_debug_does_not_leak_the_secret() {
        let v = TokenValue::from_bytes([0xcd; 32]);
        assert!(!format!("{v:?}").contains(v.as_str()));
    }

    #[test]
    fn active_token_reads_expired_at_the_exact_expiry_instant() {
        let mut t = token(1);
        t.status = TokenStatus::Active;
        t.expires_at = Some(t0() + Duration::seconds(600));
        assert_eq!(t.status_at(t0() + Duration::seconds(599)), TokenStatus::Active);
        assert_eq!(t.status_at(t0() + Duration::seconds(600)), TokenStatus::Expired);
        assert!(!t.is_live_at(t0() + Duration::seconds(600)));
    }

    #[test]
    fn status_round_trips_through_its_spelling() {
        for s in [TokenStatus::Waiting, TokenStatus::Active, TokenStatus::Expired] {
            assert_eq!(TokenStatus::from_str(s.as_str()), Ok(s));
        }
        assert_eq!(TokenStatus::Waiting.as_str(), "WAITING");
        assert!(TokenStatus::from_str("waiting").is_err());
    }

    #[test]
    fn position_is_sequence_minus_admitted_cursor() {
        let cursor = QueueCursor { admitted_through: 10, last_admission_at: None, epoch: 0, draw: None };
        let view = TokenView::of(token(13), &cursor, &settings(), t0());
        assert_eq!(view.position, 3);
        assert_eq!(view.status, TokenStatus::Waiting);
    }

    #[test]
    fn active_and_expired_tokens_have_position_zero_and_no_poll_pace() {
        let cursor = QueueCursor::default();
        let mut t = token(1);
        t.status = TokenStatus::Active;
        t.expires_at = Some(t0() + Duration::seconds(1));
        let now = TokenView::of(t.clone(), &cursor, &settings(), t0());
        assert_eq!((now.position, now.poll_after_secs), (0, 0));
        let later = TokenView::of(t, &cursor, &settings(), t0() + Duration::seconds(1));
        assert_eq!((later.position, later.status, later.estimated_wait_secs), (0, TokenStatus::Expired, 0));
    }

    #[test]
    fn the_poll_pace_follows_the_wait_within_bounds() {
        let cursor = QueueCursor { admitted_through: 0, last_admission_at: Some(t0()), epoch: 0, draw: None };
        let view = |seq, paused| {
            TokenView::of(
                token(seq),
                &cursor,
                &QueueSettings { paused, admission: policy() },
                t0() + Duration::seconds(20),
            )
        };
        assert_eq!(view(1, false).poll_after_secs, 10, "40 s to wait: poll in 10 s");
        assert_eq!(view(1000, false).poll_after_secs, 20, "capped");
        assert_eq!(view(1, true).poll_after_secs, 20, "paused: slowest pace");
        assert!(view(1, true).paused);
        let due = TokenView::of(token(1), &QueueCursor::default(), &settings(), t0());
        assert_eq!(due.poll_after_secs, 1, "due now: poll soon");
    }

    #[test]
    fn estimated_wait_counts_batches_and_time_to_next_tick() {
        let p = policy();
        let cursor = QueueCursor { admitted_through: 0, last_admission_at: Some(t0()), epoch: 0, draw: None };
        let now = t0() + Duration::seconds(20);
        // next tick in 40 s admits positions 1..=3; 4..=6 one interval later.
        assert_eq!(p.estimated_wait_secs(1, &cursor, now), 40);
        assert_eq!(p.estimated_wait_secs(3, &cursor, now), 40);
        assert_eq!(p.estimated_wait_secs(4, &cursor, now), 100);
        assert_eq!(p.estimated_wait_secs(7, &cursor, now), 160);
        // No admission yet: the next check may admit at once.
        assert_eq!(p.estimated_wait_secs(1, &QueueCursor::default(), now), 0);
        assert_eq!(p.estimated_wait_secs(0, &cursor, now), 0);
    }

    #[test]
    fn estimated_wait_rounds_partial_seconds_up() {
        let p = policy();
        let cursor = QueueCursor { admitted_through: 0, last_admission_at: Some(t0()), epoch: 0, draw: None };
        assert_eq!(p.estimated_wait_secs(1, &cursor, t0() + Duration::milliseconds(59_500)), 1);
    }

    #[test]
    fn admission_is_due_exactly_one_interval_after_the_last() {
        let p = policy();
        assert!(p.is_due(None, t0()));
        assert!(!p.is_due(Some(t0()), t0() + Duration::seconds(59)));
        assert!(p.is_due(Some(t0()), t0() + Duration::seconds(60)));
        assert_eq!(p.next_admission_at(Some(t0()), t0() + Duration::seconds(1)), t0() + Duration::seconds(60));
        assert_eq!(p.next_admission_at(Some(t0()), t0() + Duration::seconds(90)), t0() + Duration::seconds(90));
    }

    #[test]
    fn quota_is_the_least_of_batch_cap_room_and_waiting() {
        let mut p = policy();
        assert_eq!(p.quota(0, 10), 3);
        assert_eq!(p.quota(0, 2), 2);
        p.max_active = Some(5);
        assert_eq!(p.quota(4, 10), 1);
        assert_eq!(p.quota(5, 10), 0);
        assert_eq!(p.quota(9, 10), 0);
    }

    #[test]
    fn a_patch_is_checked_against_the_contract_bounds_and_applied_field_by_field() {
        assert!(SettingsPatch::new(SettingsChange::default()).is_err(), "an empty change");
        assert!(SettingsPatch::new(SettingsChange { admit_batch: Some(0), ..SettingsChange::default() }).is_err());
        assert!(SettingsPatch::new(SettingsChange { admit_batch: Some(100_001), ..SettingsChange::default() }).is_err());
        assert!(SettingsPatch::new(SettingsChange { admit_interval_secs: Some(86_401), ..SettingsChange::default() })
            .is_err());
        assert!(SettingsPatch::new(SettingsChange { active_ttl_secs: Some(9), ..SettingsChange::default() }).is_err());
        assert!(SettingsPatch::new(SettingsChange { max_active: Some(Some(0)), ..SettingsChange::default() }).is_err());
        let e = SettingsPatch::new(SettingsChange { admit_batch: Some(-1), ..SettingsChange::default() }).unwrap_err();
        assert!(e.0.contains("admitBatch"), "{e}");

        let patch = SettingsPatch::new(SettingsChange {
            paused: Some(true),
            admit_batch: Some(5),
            active_ttl_secs: Some(30),
            max_active: Some(None),
            ..SettingsChange::default()
        })
        .unwrap();
        let before = QueueSettings { paused: false, admission: AdmissionPolicy { max_active: Some(9), ..policy() } };
        let after = patch.apply(before);
        assert!(after.paused);
        assert_eq!(after.admission.batch, 5);
        assert_eq!(after.admission.interval, policy().interval, "untouched");
        assert_eq!(after.admission.active_ttl, Duration::seconds(30));
        assert_eq!(after.admission.max_active, None, "an explicit null lifts the cap");
    }

    #[test]
    fn settings_read_as_one_log_line() {
        let s = QueueSettings { paused: true, admission: AdmissionPolicy { max_active: Some(9), ..policy() } };
        assert_eq!(s.to_string(), "paused=true batch=3 interval=60s ttl=600s max_active=9");
        assert!(settings().to_string().ends_with("max_active=none"));
    }

    #[test]
    fn the_next_admission_is_unknown_while_paused() {
        let stats = QueueStats {
            waiting: 1,
            active: 0,
            issued_through: 1,
            cursor: QueueCursor { admitted_through: 0, last_admission_at: Some(t0()), epoch: 0, draw: None },
            now: t0() + Duration::seconds(10),
            abandoned: 0,
        };
        assert_eq!(QueueState::of(stats, settings()).next_admission_at, Some(t0() + Duration::seconds(60)));
        let paused = QueueSettings { paused: true, ..settings() };
        assert_eq!(QueueState::of(stats, paused).next_admission_at, None);
    }
}
