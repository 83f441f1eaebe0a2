//! Transaction-level advisory locks: what each one serialises, and its key.
//!
//! All of them use PostgreSQL's two-key form `(int4, int4)`, whose key space is separate from
//! the one-key `bigint` form used by the session locks of migrations and test templates. The
//! first key names the purpose, the second the thing (0 for the singletons, a 32-bit hash for
//! users and tokens: a collision only makes two unrelated calls wait for each other, never
//! lets two related ones through). Transaction-level, so a lock can never outlive its
//! transaction on a pooled connection, and each is taken in a statement of its own before the
//! reads it protects: in READ COMMITTED every statement takes a fresh snapshot, so a read
//! after the lock sees everything the previous holder committed.

use domain::ids::UserId;
use domain::queue::TokenValue;

/// Token issue: one batch at a time over all instances, held to commit, so batches commit in
/// `seq` order and each numbers from the last committed `max(seq)`.
pub(crate) const ISSUE_BEGIN: &str = "BEGIN; SELECT pg_advisory_xact_lock(1000001, 0)";

/// The admission tick: one at a time over all instances, and, for the tick's length, no issue
/// batch. The issue lock is taken second (issues never take the admission lock, so the order
/// cannot deadlock) and held to commit: every token whose issue committed before the tick is
/// in the tick's count of the waiting, and every batch that commits after it reads the moved
/// cursor. Without it, a batch could read the cursor, then commit before a tick that did not
/// count its token, and answer a position neither order of the two calls gives. The price:
/// issues wait for the length of a tick (milliseconds for a batch of hundreds).
pub(crate) const ADMISSION_BEGIN: &str =
    "BEGIN; SELECT pg_advisory_xact_lock(1000002, 0); SELECT pg_advisory_xact_lock(1000001, 0)";

/// One user's holds, so the count of their live holds cannot be raced (write skew).
pub(crate) const HOLDS: i32 = 1_000_003;

/// Payments made with one token, so the "has this token paid" read is authoritative.
pub(crate) const TOKEN_PAYMENTS: i32 = 1_000_004;

/// `BEGIN` and the lock on `user`'s holds, in one round trip.
pub(crate) fn holds_begin(user: UserId) -> String {
    format!("BEGIN; SELECT pg_advisory_xact_lock({HOLDS}, {})", user_key(user))
}

/// `BEGIN` and the lock on payments with `token`, in one round trip.
pub(crate) fn token_payments_begin(token: &TokenValue) -> String {
    format!("BEGIN; SELECT pg_advisory_xact_lock({TOKEN_PAYMENTS}, {})", token_key(token))
}

/// A user's second key: the UUID folded to 32 bits.
pub(crate) fn user_key(user: UserId) -> i32 {
    user.as_uuid()
        .as_bytes()
        .chunks_exact(4)
        .map(|c| i32::from_be_bytes([c[0], c[1], c[2], c[3]]))
        .fold(0, |acc, word| acc ^ word)
}

/// A token's second key: its first 32 bits (a token is 256 random bits in hex).
pub(crate) fn token_key(token: &TokenValue) -> i32 {
    let word = token.as_str().get(..8).and_then(|hex| u32::from_str_radix(hex, 16).ok()).unwrap_or(0);
    i32::from_be_bytes(word.to_be_bytes())
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, reason = "test code")]

    use super::*;

    #[test]
    fn keys_are_stable_across_processes() {
        let token = TokenValue::parse(&format!("ffffffff{}", "0".repeat(56))).unwrap();
        assert_eq!(token_key(&token), -1);
        let user = UserId::from_uuid(uuid::Uuid::from_u128(0x0000_0001_0000_0002_0000_0004_0000_0008));
        assert_eq!(user_key(user), 15);
        assert_eq!(token_payments_begin(&token), "BEGIN; SELECT pg_advisory_xact_lock(1000004, -1)");
    }
}
