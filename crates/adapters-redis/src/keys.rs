//! The key names of one deployment (see the crate docs, "Layout").

use domain::ids::UserId;
use domain::queue::TokenValue;

/// Every key of one namespace, `{prefix}:...`.
#[derive(Debug, Clone)]
pub(crate) struct Keys {
    /// The namespace, braces included: `{concert}`.
    pub(crate) namespace: String,
    /// The last `seq` issued (a counter).
    pub(crate) issued: String,
    /// The cursor hash: `admitted` (admitted_through), `last` (last_admission_at).
    pub(crate) cursor: String,
    /// WAITING token values in `seq` order (a list).
    pub(crate) waiting: String,
    /// ACTIVE token values scored by `expires_at` (a sorted set).
    pub(crate) active: String,
    /// Prefix of a token's hash: `{prefix}:t:<value>`.
    pub(crate) token_prefix: String,
    /// Prefix of a user's pointer to their latest token: `{prefix}:u:<uuid>`.
    pub(crate) user_prefix: String,
}

impl Keys {
    pub(crate) fn new(prefix: &str) -> Self {
        let ns = format!("{{{prefix}}}");
        Self {
            issued: format!("{ns}:issued"),
            cursor: format!("{ns}:cursor"),
            waiting: format!("{ns}:waiting"),
            active: format!("{ns}:active"),
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

    #[test]
    fn every_key_sits_in_the_braced_namespace() {
        let keys = Keys::new("concert");
        let value = TokenValue::from_bytes([0xab; 32]);
        let user = UserId::from_uuid(uuid::Uuid::nil());
        assert_eq!(keys.issued, "{concert}:issued");
        assert_eq!(keys.token(&value), format!("{{concert}}:t:{}", value.as_str()));
        assert_eq!(keys.user(user), "{concert}:u:00000000-0000-0000-0000-000000000000");
        for k in [&keys.issued, &keys.cursor, &keys.waiting, &keys.active, &keys.token_prefix, &keys.user_prefix] {
            assert!(k.starts_with("{concert}:"), "{k}");
        }
    }
}
