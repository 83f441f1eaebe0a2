//! The key names of one line and where a token's record sits (see the crate docs, "Layout").
//!
//! No token has a key of its own while it waits. A line's WAITING tokens are packed records in
//! hashes of [`RECORDS_PER_BUCKET`] consecutive `seq`s, its users one hash from user id to
//! `seq`, its order a list of `seq`s: about 130 bytes of Redis memory per waiting buyer where
//! a key per token and per user took about 550. A token's value carries its arrival `seq` (see
//! [`Place`]), so a poll finds the record without an index.

use domain::ids::UserId;
use domain::queue::TokenValue;
use domain::room::RoomId;

/// How many consecutive `seq`s share one record hash (`{ns}:r:<seq / 128>`). 128 is Redis'
/// default `hash-max-listpack-entries`: a full bucket stays a listpack, a few bytes per entry
/// beyond the record itself.
pub(crate) const RECORDS_PER_BUCKET: u64 = 128;

/// Every key of one line's namespace, `{prefix}:...` for `main`, `{prefix:room}:...` for a
/// room: the braces are a cluster hash tag, so every key of one line shares one slot.
#[derive(Debug, Clone)]
pub(crate) struct Keys {
    /// The namespace, braces included: `{concert}` or `{concert:tour}`.
    pub(crate) namespace: String,
    /// The last `seq` issued (a counter).
    pub(crate) issued: String,
    /// The cursor hash: `admitted` (admitted_through), `last` (last_admission_at), `epoch`,
    /// `layout`, `abandoned`, `swept` (positions that left the WAITING list's head), `live`
    /// and `closed` (the open records' count, the last closed record), the draw's record and,
    /// while one runs, its claim.
    pub(crate) cursor: String,
    /// The arrival `seq` of every token not yet swept, in position order (a list): those
    /// admitted by a record (derived ACTIVE, stored WAITING, or written EXPIRED since) at its
    /// head, up to position `admitted`, then the WAITING ones. Position `p` is at index
    /// `p - swept - 1` (the cursor's `swept`).
    pub(crate) waiting: String,
    /// The admission records (a sorted set), scored by `through`, member
    /// `through:after:at:expires`: the WAITING tokens at positions `after + 1 ..= through`
    /// became ACTIVE at `at` until `expires` (`derive` in `prelude.lua`).
    pub(crate) admissions: String,
    /// The open records' counts (a hash, field `through`): the tokens a record admitted and
    /// not used up, until the record expires (`derived_active` in `prelude.lua`).
    pub(crate) open: String,
    /// The WAITING list in its drawn order, while a draw builds it (a list of `seq`s).
    pub(crate) staging: String,
    /// The draw's position table (a string): 4 bytes big-endian per arrival `seq` `s`, at byte
    /// `4 * (s - 1)`, the token's drawn `seq` (0 or absent: unchanged). In force once the draw
    /// is recorded (`draw_at`); `drawn_seq` in `prelude.lua` reads it.
    pub(crate) drawn: String,
    /// The users' latest tokens (a hash): field the user id's 16 bytes, value the `seq` of
    /// their token while it is stored WAITING (dropped when it is retired).
    pub(crate) users: String,
    /// Prefix of a bucket of records: `{ns}:r:<seq / 128>`, a hash from `seq % 128` to the
    /// packed record of a token stored WAITING (`RECORD` in `prelude.lua`).
    pub(crate) record_prefix: String,
}

impl Keys {
    /// The keys of `room`'s line under `prefix`; `main`'s are `{prefix}:...`, as they always were.
    pub(crate) fn new(prefix: &str, room: &RoomId) -> Self {
        let ns = if room.is_main() { format!("{{{prefix}}}") } else { format!("{{{prefix}:{}}}", room.as_str()) };
        Self {
            issued: format!("{ns}:issued"),
            cursor: format!("{ns}:cursor"),
            waiting: format!("{ns}:waiting"),
            admissions: format!("{ns}:admissions"),
            open: format!("{ns}:open"),
            staging: format!("{ns}:staging"),
            drawn: format!("{ns}:drawn"),
            users: format!("{ns}:users"),
            record_prefix: format!("{ns}:r:"),
            namespace: ns,
        }
    }

    /// Where the token `value` of this line is stored; `None` when the value cannot be one of
    /// this layout's (its last 8 bytes are no `seq`). Allocates nothing: the scripts name the
    /// keys from the namespace, `seq` and random part (see [`Keys::bucket`]).
    pub(crate) fn place(&self, value: &TokenValue) -> Option<Place> {
        let mut bytes = [0_u8; 32];
        hex::decode_to_slice(value.secret(), &mut bytes).ok()?;
        let (random, seq) = bytes.split_at(24);
        let seq = u64::from_be_bytes(seq.try_into().ok()?);
        if seq == 0 || seq >= 1 << 53 {
            return None;
        }
        Some(Place { seq, random: random.try_into().ok()? })
    }

    /// The bucket of records holding `seq` while stored WAITING, and its field there (`slot_of`
    /// in `prelude.lua`).
    #[cfg(any(test, feature = "testing"))]
    pub(crate) fn bucket(&self, seq: u64) -> (String, String) {
        (format!("{}{}", self.record_prefix, seq / RECORDS_PER_BUCKET), (seq % RECORDS_PER_BUCKET).to_string())
    }

    /// The record of `seq` once expired: a packed string kept for the retention of expired
    /// tokens and then dropped by Redis (`EXPIRED` in `prelude.lua`).
    #[cfg(any(test, feature = "testing"))]
    pub(crate) fn expired(&self, seq: u64) -> String {
        format!("{}:x:{seq}", self.namespace)
    }
}

/// Where one token is stored. A token's 32 bytes are 24 random ones (192 bits: unguessable)
/// and its arrival `seq`, big-endian: the value names its record.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Place {
    /// The arrival `seq` (the line's order before any draw).
    pub(crate) seq: u64,
    /// The 24 random bytes the record must hold for the value to be this token.
    pub(crate) random: [u8; 24],
}

/// The first 24 bytes of a planned token, the random part of the value the line gives it.
pub(crate) fn random_part(value: &TokenValue) -> Option<Vec<u8>> {
    let secret = value.secret();
    hex::decode(secret.get(..48)?).ok()
}

/// The token of `room` whose random part is `random` (24 bytes) and arrival `seq` is `seq`.
pub(crate) fn token_value(room: &RoomId, random: &[u8], seq: u64) -> Option<TokenValue> {
    let mut bytes = [0_u8; 32];
    bytes.get_mut(..24)?.copy_from_slice(random.get(..24)?);
    bytes.get_mut(24..)?.copy_from_slice(&seq.to_be_bytes());
    Some(TokenValue::from_bytes(bytes).in_room(room))
}

/// A user id as the users hash and the records keep it: its 16 bytes.
pub(crate) fn user_bytes(user: UserId) -> [u8; 16] {
    *user.as_uuid().as_bytes()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn all(keys: &Keys) -> [String; 10] {
        [
            &keys.issued,
            &keys.cursor,
            &keys.waiting,
            &keys.admissions,
            &keys.open,
            &keys.staging,
            &keys.drawn,
            &keys.users,
            &keys.record_prefix,
            &keys.expired(1),
        ]
        .map(ToOwned::to_owned)
    }

    #[test]
    fn every_key_sits_in_the_braced_namespace() {
        let keys = Keys::new("concert", &RoomId::main());
        assert_eq!(keys.issued, "{concert}:issued");
        for k in all(&keys) {
            assert!(k.starts_with("{concert}:"), "{k}");
        }
    }

    #[test]
    fn a_room_has_a_hash_tag_of_its_own() {
        let room = RoomId::parse("tour-2027").unwrap();
        let keys = Keys::new("concert", &room);
        assert_eq!(keys.namespace, "{concert:tour-2027}");
        for k in all(&keys) {
            assert!(k.starts_with("{concert:tour-2027}:"), "{k}");
        }
    }

    #[test]
    fn a_value_names_its_record_by_its_seq() {
        let room = RoomId::parse("tour").unwrap();
        let keys = Keys::new("concert", &room);
        let value = token_value(&room, &[0xab; 24], 300).unwrap();
        assert_eq!(value.as_str(), format!("tour.{}{:016x}", "ab".repeat(24), 300));
        let place = keys.place(&value).unwrap();
        assert_eq!((place.seq, place.random), (300, [0xab; 24]));
        assert_eq!(keys.bucket(place.seq), ("{concert:tour}:r:2".to_owned(), "44".to_owned()));
        assert_eq!(keys.expired(place.seq), "{concert:tour}:x:300");
        assert_eq!(random_part(&value).unwrap(), vec![0xab; 24]);
    }

    #[test]
    fn a_value_without_a_seq_is_no_token_of_this_layout() {
        let keys = Keys::new("concert", &RoomId::main());
        assert_eq!(keys.place(&TokenValue::from_bytes([0; 32])), None);
        assert_eq!(keys.place(&TokenValue::from_bytes([0xff; 32])), None, "a seq past 2^53");
    }
}
