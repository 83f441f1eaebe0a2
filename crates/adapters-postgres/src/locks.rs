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
use domain::room::RoomId;

/// Token issue: one batch at a time over all instances, held to commit, so batches commit in
/// `seq` order and each numbers from the last committed `max(seq)`.
pub(crate) const ISSUE_BEGIN: &str = "BEGIN; SELECT pg_advisory_xact_lock(1000001, 0)";

/// The issue lock's first key; the second names the line ([`room_key`]).
pub(crate) const ISSUE: i32 = 1_000_001;

/// The admission lock's first key; the second names the line ([`room_key`]).
const ADMISSION: i32 = 1_000_002;

/// The admission tick: one at a time over all instances. A plain tick (no `abandon_after`)
/// takes the line's issue lock too, but only for its last statement, the one that moves the
/// cursor (`queue::ADMIT_ISSUE_LOCK`, then `queue::ADMIT_RECORD`), held to commit; a tick
/// that walks the line for presence takes it here, for its whole length
/// ([`ADMISSION_WALK_BEGIN`]). The issue lock is taken second (issues never take the admission
/// lock, so the order cannot deadlock). Why it is needed at all: every token whose issue
/// committed before the tick must be in the tick's count of the waiting, and every batch that
/// commits after it must read the moved cursor. Without it, a batch could read the cursor,
/// then commit before a tick that did not count its token, and answer a position neither
/// order of the two calls gives. A plain tick reads the line's highest `seq` in the statement
/// that moves the cursor, under the lock, so it needs the lock only there: issues wait for one
/// two-row write, whatever N (the write of a row per admitted token is gone: `queue`).
pub(crate) const ADMISSION_BEGIN: &str = "BEGIN; SELECT pg_advisory_xact_lock(1000002, 0)";

/// The tick that walks the line for presence: the admission lock, then the issue lock, both
/// held to commit (see [`ADMISSION_BEGIN`]): its count of the waiting and its walk must see
/// the same tokens.
pub(crate) const ADMISSION_WALK_BEGIN: &str =
    "BEGIN; SELECT pg_advisory_xact_lock(1000002, 0); SELECT pg_advisory_xact_lock(1000001, 0)";

/// A line's second key in the issue and admission locks: 0 for `main` (the keys it always had),
/// else the room id's FNV-1a hash (stable across processes and Rust versions), never 0. Two
/// rooms whose hashes collide only wait for each other's issues and ticks.
pub(crate) fn room_key(room: &RoomId) -> i32 {
    if room.is_main() {
        return 0;
    }
    let mut hash: u32 = 0x811c_9dc5;
    for byte in room.as_str().bytes() {
        hash ^= u32::from(byte);
        hash = hash.wrapping_mul(0x0100_0193);
    }
    match i32::from_be_bytes(hash.to_be_bytes()) {
        0 => 1,
        key => key,
    }
}

/// [`ISSUE_BEGIN`] for the line whose key is `key` ([`room_key`]).
pub(crate) fn issue_begin(key: i32) -> String {
    if key == 0 {
        return ISSUE_BEGIN.to_owned();
    }
    format!("BEGIN; SELECT pg_advisory_xact_lock({ISSUE}, {key})")
}

/// [`ADMISSION_BEGIN`] for the line whose key is `key` ([`room_key`]): the line's admission
/// lock.
pub(crate) fn admission_begin(key: i32) -> String {
    if key == 0 {
        return ADMISSION_BEGIN.to_owned();
    }
    format!("BEGIN; SELECT pg_advisory_xact_lock({ADMISSION}, {key})")
}

/// [`ADMISSION_WALK_BEGIN`] for the line whose key is `key` ([`room_key`]): the line's
/// admission lock, then its issue lock.
pub(crate) fn admission_walk_begin(key: i32) -> String {
    if key == 0 {
        return ADMISSION_WALK_BEGIN.to_owned();
    }
    format!("BEGIN; SELECT pg_advisory_xact_lock({ADMISSION}, {key}); SELECT pg_advisory_xact_lock({ISSUE}, {key})")
}

/// The draw of the line whose key is `key`: its admission lock only (issues go on while the
/// line is renumbered; see `queue::draw`), waited for up to `wait_ms` and with statements
/// bounded by `statement_ms` (a draw of a million tokens takes seconds, not a request's
/// milliseconds).
pub(crate) fn draw_begin(key: i32, wait_ms: u128, statement_ms: u128) -> String {
    format!(
        "BEGIN; SET LOCAL lock_timeout = {wait_ms}; SET LOCAL statement_timeout = {statement_ms}; \
         SELECT pg_advisory_xact_lock({ADMISSION}, {key})"
    )
}

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

/// A token's second key: the first 32 bits of its secret (a token's secret starts with random
/// bits in hex, after `<room>.` for a room other than `main`).
pub(crate) fn token_key(token: &TokenValue) -> i32 {
    let secret = token.as_str().rsplit_once('.').map_or(token.as_str(), |(_, secret)| secret);
    let word = secret.get(..8).and_then(|hex| u32::from_str_radix(hex, 16).ok()).unwrap_or(0);
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
        let in_room = token.in_room(&RoomId::parse("tour").unwrap());
        assert_eq!(token_key(&in_room), -1, "a room's token is keyed by its secret, not its room");
    }

    #[test]
    fn main_keeps_its_lock_keys_and_rooms_get_their_own() {
        assert_eq!(issue_begin(room_key(&RoomId::main())), ISSUE_BEGIN);
        assert_eq!(admission_begin(room_key(&RoomId::main())), ADMISSION_BEGIN);
        assert_eq!(admission_walk_begin(room_key(&RoomId::main())), ADMISSION_WALK_BEGIN);
        let a = room_key(&RoomId::parse("tour").unwrap());
        let b = room_key(&RoomId::parse("tour-2").unwrap());
        assert!(a != 0 && b != 0 && a != b);
        assert_eq!(a, room_key(&RoomId::parse("tour").unwrap()));
    }
}
