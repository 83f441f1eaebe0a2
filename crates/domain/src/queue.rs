//! The waiting room: queue tokens, their life cycle and the admission policy.
//!
//! A token is WAITING when issued, ACTIVE once an admission tick lets it in, and EXPIRED when
//! its TTL runs out or a payment uses it up. An ACTIVE token whose `expires_at` has passed
//! *reads* as EXPIRED at once, whether or not the expiry task has run yet
//! ([`QueueToken::status_at`]).
//!
//! Every token carries a gapless issue sequence number `seq`. Admission is strictly in `seq`
//! order and WAITING tokens never leave the queue any other way, so the WAITING tokens issued
//! before token `t` are exactly those with `admitted_through < seq < t.seq`, and
//! `position = t.seq - admitted_through`: one subtraction, whatever the length of the queue.

use std::fmt;

use serde::{Deserialize, Serialize};
use thiserror::Error;
use time::{Duration, OffsetDateTime};

use crate::ids::UserId;

/// The opaque bearer value of a queue token: 64 lower-case hex digits (256 random bits).
#[derive(Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(transparent)]
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
    /// [`MalformedToken`] unless `s` is exactly 64 lower-case hex digits.
    pub fn parse(s: &str) -> Result<Self, MalformedToken> {
        let ok = s.len() == Self::LEN && s.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'));
        if ok {
            Ok(Self(s.to_owned()))
        } else {
            Err(MalformedToken)
        }
    }

    /// Builds a token from 32 random bytes.
    #[must_use]
    pub fn from_bytes(bytes: [u8; 32]) -> Self {
        use fmt::Write as _;
        let mut s = String::with_capacity(Self::LEN);
        for b in bytes {
            let _ = write!(s, "{b:02x}");
        }
        Self(s)
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

/// Where new token values come from.
#[cfg_attr(any(test, feature = "mocks"), mockall::automock)]
pub trait TokenGenerator: Send + Sync {
    /// A fresh, unguessable token value.
    fn generate(&self) -> TokenValue;
}

/// Token values from the operating system's random generator (256 bits each).
#[derive(Debug, Clone, Copy, Default)]
pub struct OsTokenGenerator;

impl TokenGenerator for OsTokenGenerator {
    fn generate(&self) -> TokenValue {
        let mut bytes = [0_u8; 32];
        // getrandom only fails when the OS has no entropy source at all, where no secure token
        // can be made; falling back to UUID v4 (itself OS-random) keeps the request alive.
        if getrandom::getrandom(&mut bytes).is_err() {
            bytes[..16].copy_from_slice(uuid::Uuid::new_v4().as_bytes());
            bytes[16..].copy_from_slice(uuid::Uuid::new_v4().as_bytes());
        }
        TokenValue::from_bytes(bytes)
    }
}

/// A token's state as stored.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum TokenStatus {
    /// In line, not yet admitted.
    Waiting,
    /// Admitted: may browse, reserve and pay until `expires_at`.
    Active,
    /// TTL reached or used up by a payment. Final.
    Expired,
}

impl TokenStatus {
    /// The contract's spelling (`WAITING`, `ACTIVE`, `EXPIRED`), also used in storage.
    #[must_use]
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Waiting => "WAITING",
            Self::Active => "ACTIVE",
            Self::Expired => "EXPIRED",
        }
    }

    /// Parses the stored spelling.
    #[must_use]
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "WAITING" => Some(Self::Waiting),
            "ACTIVE" => Some(Self::Active),
            "EXPIRED" => Some(Self::Expired),
            _ => None,
        }
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
    /// When an admission tick activated it.
    pub activated_at: Option<OffsetDateTime>,
    /// When an ACTIVE token stops being valid (set on activation; set to the payment time when
    /// a payment uses the token up).
    pub expires_at: Option<OffsetDateTime>,
}

impl QueueToken {
    /// A new WAITING token.
    #[must_use]
    pub fn new_waiting(value: TokenValue, user_id: UserId, seq: i64, issued_at: OffsetDateTime) -> Self {
        Self { value, user_id, seq, status: TokenStatus::Waiting, issued_at, activated_at: None, expires_at: None }
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
    /// When the last admission tick that admitted anything ran.
    pub last_admission_at: Option<OffsetDateTime>,
}

/// How the waiting room lets people in. Built once from configuration.
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
}

impl AdmissionPolicy {
    /// Whether an admission tick may run at `now`, given when the last one that admitted
    /// anything ran. Ticks that admit nothing do not count, so an idle waiting room lets a
    /// newcomer in at the next check rather than up to M later.
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
        let whole = wait.whole_seconds();
        if wait > Duration::seconds(whole) {
            whole + 1
        } else {
            whole
        }
    }
}

/// What a client sees of its token.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TokenView {
    /// The token.
    pub token: QueueToken,
    /// The status as of the read (see [`QueueToken::status_at`]).
    pub status: TokenStatus,
    /// 1 + the WAITING tokens issued before it; 0 unless WAITING.
    pub position: i64,
    /// Seconds until admission, 0 unless WAITING.
    pub estimated_wait_secs: i64,
}

impl TokenView {
    /// Builds the view of `token` at `now`.
    #[must_use]
    pub fn of(token: QueueToken, cursor: &QueueCursor, policy: &AdmissionPolicy, now: OffsetDateTime) -> Self {
        let status = token.status_at(now);
        let position = if status == TokenStatus::Waiting { (token.seq - cursor.admitted_through).max(1) } else { 0 };
        let estimated_wait_secs = policy.estimated_wait_secs(position, cursor, now);
        Self { token, status, position, estimated_wait_secs }
    }
}

/// The outcome of one admission tick.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AdmissionOutcome {
    /// The tick ran and activated this many tokens (possibly 0 if none waited or the cap held).
    Admitted(u64),
    /// The last admission was less than one interval ago (perhaps by another instance).
    NotDue {
        /// When the next tick may run.
        next_at: OffsetDateTime,
    },
    /// Another instance is admitting right now.
    Busy,
}

#[cfg(test)]
mod tests {
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
        }
    }

    fn token(seq: i64) -> QueueToken {
        QueueToken::new_waiting(TokenValue::from_bytes([7; 32]), UserId::random(), seq, t0())
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
    fn os_generator_gives_distinct_well_formed_tokens() {
        let a = OsTokenGenerator.generate();
        let b = OsTokenGenerator.generate();
        assert_ne!(a, b);
        assert!(TokenValue::parse(a.as_str()).is_ok());
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
            assert_eq!(TokenStatus::parse(s.as_str()), Some(s));
        }
        assert_eq!(TokenStatus::parse("waiting"), None);
    }

    #[test]
    fn position_is_sequence_minus_admitted_cursor() {
        let cursor = QueueCursor { admitted_through: 10, last_admission_at: None };
        let view = TokenView::of(token(13), &cursor, &policy(), t0());
        assert_eq!(view.position, 3);
        assert_eq!(view.status, TokenStatus::Waiting);
    }

    #[test]
    fn active_and_expired_tokens_have_position_zero() {
        let cursor = QueueCursor::default();
        let mut t = token(1);
        t.status = TokenStatus::Active;
        t.expires_at = Some(t0() + Duration::seconds(1));
        assert_eq!(TokenView::of(t.clone(), &cursor, &policy(), t0()).position, 0);
        let later = TokenView::of(t, &cursor, &policy(), t0() + Duration::seconds(1));
        assert_eq!((later.position, later.status, later.estimated_wait_secs), (0, TokenStatus::Expired, 0));
    }

    #[test]
    fn estimated_wait_counts_batches_and_time_to_next_tick() {
        let p = policy();
        let cursor = QueueCursor { admitted_through: 0, last_admission_at: Some(t0()) };
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
        let cursor = QueueCursor { admitted_through: 0, last_admission_at: Some(t0()) };
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
}
