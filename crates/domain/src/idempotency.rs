//! Idempotent retries of charges and payments (`Idempotency-Key`), in the manner of Stripe's
//! API and the IETF `Idempotency-Key` draft.
//!
//! A request that succeeds is recorded with its response in the same transaction as its
//! effect; a retry with the same key and the same request gets that response again and changes
//! nothing; the same key with a different request is refused; a request that fails records
//! nothing, so it can be retried with its key. The store only claims a key and keeps the
//! record; what counts as "the same request" and what a retry gets are decided here.

use thiserror::Error;
use time::OffsetDateTime;

use crate::ids::{ReservationId, UserId};
use crate::money::Won;
use crate::payment::Payment;

/// A client's `Idempotency-Key`: 1 to 255 visible ASCII characters, scoped to one user.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct IdempotencyKey(String);

/// A header value that cannot be a key.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Error)]
#[error("an Idempotency-Key has 1 to 255 visible ASCII characters")]
pub struct MalformedKey;

impl IdempotencyKey {
    /// Most characters in a key.
    pub const MAX_LEN: usize = 255;

    /// Validates a key.
    ///
    /// # Errors
    /// [`MalformedKey`] unless `s` has 1 to 255 characters, each visible ASCII (`!` to `~`).
    pub fn parse(s: &str) -> Result<Self, MalformedKey> {
        let ok = (1..=Self::MAX_LEN).contains(&s.len()) && s.bytes().all(|b| b.is_ascii_graphic());
        if ok {
            Ok(Self(s.to_owned()))
        } else {
            Err(MalformedKey)
        }
    }

    /// The key as sent.
    #[must_use]
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// What makes two requests "the same request" for one key: the endpoint and its body fields.
/// Stored with the record and compared on every retry.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Fingerprint(String);

impl Fingerprint {
    /// A charge of `amount` to `user`.
    #[must_use]
    pub fn charge(user: UserId, amount: Won) -> Self {
        Self(format!("POST /users/{user}/balance/charge amount={}", amount.get()))
    }

    /// A payment of `reservation` (whichever token of the user presents it).
    #[must_use]
    pub fn payment(reservation: ReservationId) -> Self {
        Self(format!("POST /payments reservationId={reservation}"))
    }

    /// Rebuilds a stored fingerprint.
    #[must_use]
    pub fn from_stored(s: String) -> Self {
        Self(s)
    }

    /// The stored form.
    #[must_use]
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// A response as it was sent: status and body bytes, replayed unchanged.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredResponse {
    /// The HTTP status.
    pub status: u16,
    /// The body, exactly as sent.
    pub body: String,
}

/// A recorded outcome of a keyed request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IdempotencyRecord {
    /// The request that was made with the key.
    pub fingerprint: Fingerprint,
    /// What it answered.
    pub response: StoredResponse,
}

/// The effect of a request that succeeded, for the caller to turn into its response.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Effect {
    /// A charge: the new balance.
    Charged {
        user: UserId,
        /// Their balance after the charge.
        balance: Won,
    },
    /// A payment.
    Paid(Payment),
}

/// Turns an effect into the response recorded for it. The HTTP adapter supplies it, so the
/// record holds exactly the bytes the first answer carried.
pub type Render<'a> = dyn Fn(&Effect) -> StoredResponse + Send + Sync + 'a;

/// What a use case needs to run a keyed request.
pub struct IdempotencyRequest<'a> {
    pub key: IdempotencyKey,
    /// How to record the response.
    pub render: &'a Render<'a>,
}

impl std::fmt::Debug for IdempotencyRequest<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("IdempotencyRequest").field("key", &self.key).finish_non_exhaustive()
    }
}

/// What a store is given to claim a key inside the unit of work that makes the effect.
pub struct IdempotencyGuard<'a> {
    /// Whose key.
    pub user: UserId,
    pub key: &'a IdempotencyKey,
    /// The request made with it.
    pub fingerprint: &'a Fingerprint,
    /// When the record is made.
    pub now: OffsetDateTime,
    /// Until when it must be kept (at least).
    pub expires_at: OffsetDateTime,
    /// How to record the response of the effect.
    pub render: &'a Render<'a>,
}

impl std::fmt::Debug for IdempotencyGuard<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("IdempotencyGuard")
            .field("user", &self.user)
            .field("key", &self.key)
            .field("fingerprint", &self.fingerprint)
            .finish_non_exhaustive()
    }
}

/// The result of a unit of work guarded by a key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Claimed<T> {
    /// The work ran (and, when guarded and successful, was recorded with the key).
    Done(T),
    /// An earlier request with this key was recorded; nothing ran.
    Recorded(IdempotencyRecord),
    /// A concurrent request with this key is still running; nothing ran.
    InFlight,
}

/// What a retry with a recorded key gets.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Replay {
    /// The same request: its recorded response.
    Same(StoredResponse),
    /// A different request: refused.
    Reused,
}

impl IdempotencyRecord {
    /// The rule for a retry: the recorded answer for the same request, a refusal otherwise.
    #[must_use]
    pub fn replay_for(self, fingerprint: &Fingerprint) -> Replay {
        if self.fingerprint == *fingerprint {
            Replay::Same(self.response)
        } else {
            Replay::Reused
        }
    }
}

/// The result of a keyed (or unkeyed) use case.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome<T> {
    /// It ran now. With a key, `recorded` is the response stored with it (send exactly that).
    Fresh {
        /// The result.
        value: T,
        /// The response recorded with the key, if one was given.
        recorded: Option<StoredResponse>,
    },
    /// A retry of a recorded request: send this response again, marked as replayed.
    Replayed(StoredResponse),
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_are_one_to_255_visible_ascii_characters() {
        assert!(IdempotencyKey::parse("a").is_ok());
        assert!(IdempotencyKey::parse(&"k".repeat(255)).is_ok());
        assert!(IdempotencyKey::parse("0f8c-41b7:retry/1").is_ok());
        assert_eq!(IdempotencyKey::parse(""), Err(MalformedKey));
        assert_eq!(IdempotencyKey::parse(&"k".repeat(256)), Err(MalformedKey));
        assert_eq!(IdempotencyKey::parse("a b"), Err(MalformedKey), "space is not visible");
        assert_eq!(IdempotencyKey::parse("키"), Err(MalformedKey), "not ASCII");
        assert_eq!(IdempotencyKey::parse("a\tb"), Err(MalformedKey));
    }

    #[test]
    fn a_retry_replays_only_the_same_request() {
        let user = UserId::from_uuid(uuid::Uuid::nil());
        let record = IdempotencyRecord {
            fingerprint: Fingerprint::charge(user, Won::new(5)),
            response: StoredResponse { status: 200, body: "{}".into() },
        };
        assert_eq!(
            record.clone().replay_for(&Fingerprint::charge(user, Won::new(5))),
            Replay::Same(StoredResponse { status: 200, body: "{}".into() })
        );
        assert_eq!(record.clone().replay_for(&Fingerprint::charge(user, Won::new(6))), Replay::Reused);
        let r = ReservationId::from_uuid(uuid::Uuid::nil());
        assert_eq!(record.replay_for(&Fingerprint::payment(r)), Replay::Reused);
    }
}
