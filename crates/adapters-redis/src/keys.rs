//! The key names of one line (see the crate docs, "Layout").

use domain::ids::UserId;
use domain::queue::TokenValue;
use domain::room::RoomId;

/// Every key of one line's namespace, `{prefix}:...` for `main`, `{prefix:room}:...` for a
/// room: the braces are a cluster hash tag, so every key of one line shares one slot.
#[derive(Debug, Clone)]
pub(crate) struct Keys {
    /// The namespace, braces included: `{concert}` or `{concert:tour}`.
    pub(crate) namespace: String,
    /// The last `seq` issued (a counter).
    pub(crate) issued: String,
    /// The cursor hash: `admitted` (admitted_through), `last` (last_admission_at), `epoch`,
    /// `abandoned`, `swept` (positions that left the WAITING list's head), `live` and `closed`
    /// (the open records' count, the last closed record), the draw's record and, while one
    /// runs, its claim.
    pub(crate) cursor: String,
    /// Every token value not yet swept, in position order (a list): those admitted by a record
    /// (derived ACTIVE, stored WAITING, or written EXPIRED since) at its head, up to position
    /// `admitted`, then the WAITING ones. Position `p` is at index `p - swept - 1` (the
    /// cursor's `swept`).
    pub(crate) waiting: String,
    /// Tokens stored ACTIVE, scored by `expires_at` (a sorted set): written only by versions
    /// that activated each token at admission; swept, counted and used up as before.
    pub(crate) active: String,
    /// The admission records (a sorted set), scored by `through`, member
    /// `through:after:at:expires`: the WAITING tokens at positions `after + 1 ..= through`
    /// became ACTIVE at `at` until `expires` (`derive` in `prelude.lua`).
    pub(crate) admissions: String,
    /// The open records' counts (a hash, field `through`): the tokens a record admitted and
    /// not used up, until the record expires (`derived_active` in `prelude.lua`).
    pub(crate) open: String,
    /// The WAITING list in its drawn order, while a draw builds it (a list).
    pub(crate) staging: String,
    /// The draw's position table (a string): 4 bytes big-endian per arrival `seq` `s`, at byte
    /// `4 * (s - 1)`, the token's drawn `seq` (0 or absent: unchanged). In force once the draw
    /// is recorded (`draw_at`); `drawn_seq` in `prelude.lua` reads it.
    pub(crate) drawn: String,
    /// Prefix of a token's hash: `{prefix}:t:<value>`.
    pub(crate) token_prefix: String,
    /// Prefix of a user's pointer to their latest token: `{prefix}:u:<uuid>`.
    pub(crate) user_prefix: String,
}

impl Keys {
    /// The keys of `room`'s line under `prefix`; `main`'s are `{prefix}:...`, as they always were.
    pub(crate) fn new(prefix: &str, room: &RoomId) -> Self {
        let ns = if room.is_main() { format!("{{{prefix}}}") } else { format!("{{{prefix}:{}}}", room.as_str()) };
        Self {
            issued: format!("{ns}:issued"),
            cursor: format!("{ns}:cursor"),
            waiting: format!("{ns}:waiting"),
            active: format!("{ns}:active"),
            admissions: format!("{ns}:admissions"),
            open: format!("{ns}:open"),
            staging: format!("{ns}:staging"),
            drawn: format!("{ns}:drawn"),
            token_prefix: format!("{ns}:t:"),
            user_prefix: format!("{ns}:u:"),
            namespace: ns,
        }
    }

    pub(crate) fn token(&self, value: &TokenValue) -> String {
        format!("{}{}", self.token_prefix, value.as_str())
    }

    pub(crate) fn user(&self, user: UserId) -> String {
        format!("{}{user}", self.user_prefix)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn all(keys: &Keys) -> [&String; 10] {
        [
            &keys.issued,
            &keys.cursor,
            &keys.waiting,
            &keys.active,
            &keys.admissions,
            &keys.open,
            &keys.staging,
            &keys.drawn,
            &keys.token_prefix,
            &keys.user_prefix,
        ]
    }

    #[test]
    fn every_key_sits_in_the_braced_namespace() {
        let keys = Keys::new("concert", &RoomId::main());
        let value = TokenValue::from_bytes([0xab; 32]);
        let user = UserId::from_uuid(uuid::Uuid::nil());
        assert_eq!(keys.issued, "{concert}:issued");
        assert_eq!(keys.token(&value), format!("{{concert}}:t:{}", value.as_str()));
        assert_eq!(keys.user(user), "{concert}:u:00000000-0000-0000-0000-000000000000");
        for k in all(&keys) {
            assert!(k.starts_with("{concert}:"), "{k}");
        }
    }

    #[test]
    fn a_room_has_a_hash_tag_of_its_own() {
        let room = RoomId::parse("tour-2027").unwrap();
        let keys = Keys::new("concert", &room);
        let value = TokenValue::from_bytes([0xab; 32]).in_room(&room);
        assert_eq!(keys.namespace, "{concert:tour-2027}");
        assert_eq!(keys.token(&value), format!("{{concert:tour-2027}}:t:tour-2027.{}", "ab".repeat(32)));
        for k in all(&keys) {
            assert!(k.starts_with("{concert:tour-2027}:"), "{k}");
        }
    }
}
