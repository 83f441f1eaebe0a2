//! How to reach PostgreSQL, and how long anything the adapter does may wait.
//!
//! Every store call must end by itself well inside the 5 s in which the contract answers
//! "database unreachable", and a call that fails must have committed nothing (the HTTP layer
//! answers 503 only once the call has returned). The bounds that make that true, with their
//! defaults:
//!
//! | bound | default | what it cuts off |
//! | --- | --- | --- |
//! | `checkout_timeout` | 1 s | waiting for a pooled connection (pool busy, or the server down) |
//! | `connect_timeout` | 2 s | libpq's TCP and start-up handshake of a new connection |
//! | `lock_timeout` | 500 ms | one wait for a row, advisory or key lock held by someone else |
//! | `statement_timeout` | 1.5 s | one statement, locks included |
//! | `dead_server_after` | 2 s | a server that stopped answering (TCP keepalives, `tcp_user_timeout`) |
//! | `call_budget` | 2.5 s | a transaction is rolled back instead of committed once its call has run this long |
//!
//! A single-statement call therefore ends within `checkout_timeout + statement_timeout`
//! (2.5 s), and a transaction either commits within `call_budget` of its call's start or rolls
//! back; only a COMMIT sent to a server that dies at that moment can take up to
//! `dead_server_after` longer (and its outcome is then unknown, see `error`).

use std::time::Duration;

use percent_encoding::{percent_decode_str, utf8_percent_encode, AsciiSet, NON_ALPHANUMERIC};
use thiserror::Error;
use url::Url;

/// How to reach PostgreSQL and how long to wait for it (see the module docs).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PgConfig {
    /// `postgres://user:password@host:port/database?params` (the contract's `DATABASE_URL`).
    /// Parameters given here are kept, except the session timeouts, which come from the
    /// fields below.
    pub url: String,
    /// Most connections the pool opens.
    pub pool_size: u32,
    /// How long a call waits for a pooled connection before `StoreError::Unavailable`.
    pub checkout_timeout: Duration,
    /// libpq's `connect_timeout` for a new connection (whole seconds, at least 2: libpq's
    /// minimum).
    pub connect_timeout: Duration,
    /// Server-side `lock_timeout` of every pooled connection.
    pub lock_timeout: Duration,
    /// Server-side `statement_timeout` of every pooled connection.
    pub statement_timeout: Duration,
    /// How soon a server that stopped answering is noticed: TCP keepalives (idle and interval
    /// half of it, one probe) and libpq's `tcp_user_timeout`.
    pub dead_server_after: Duration,
    /// A transaction whose call has run this long (from the call's start, connection checkout
    /// included) is rolled back instead of committed, and the call answers
    /// `StoreError::Timeout`.
    pub call_budget: Duration,
    /// Most token issues numbered by one transaction (group commit).
    pub issue_batch_max: usize,
}

impl PgConfig {
    /// The defaults of the module docs, sized for the 2-core target: 10 connections (about
    /// 2 x cores plus a few for I/O waits; every statement is a short indexed one, so more
    /// connections would only queue inside the server), batches of up to 512 issues.
    #[must_use]
    pub fn new(url: impl Into<String>) -> Self {
        Self {
            url: url.into(),
            pool_size: 10,
            checkout_timeout: Duration::from_secs(1),
            connect_timeout: Duration::from_secs(2),
            lock_timeout: Duration::from_millis(500),
            statement_timeout: Duration::from_millis(1_500),
            dead_server_after: Duration::from_secs(2),
            call_budget: Duration::from_millis(2_500),
            issue_batch_max: 512,
        }
    }

    /// Checks the settings that the adapter's guarantees rest on.
    ///
    /// # Errors
    /// [`ConfigError`] for a URL that is not a PostgreSQL URL naming a database, or a zero
    /// timeout (the error classification and the call budget need every one of them).
    pub fn validate(&self) -> Result<(), ConfigError> {
        DatabaseUrl::parse(&self.url)?;
        let zero = [
            ("checkout_timeout", self.checkout_timeout),
            ("lock_timeout", self.lock_timeout),
            ("statement_timeout", self.statement_timeout),
            ("dead_server_after", self.dead_server_after),
            ("call_budget", self.call_budget),
        ]
        .into_iter()
        .find(|(_, d)| d.is_zero());
        if let Some((name, _)) = zero {
            return Err(ConfigError::ZeroTimeout(name));
        }
        if self.pool_size == 0 || self.issue_batch_max == 0 {
            return Err(ConfigError::ZeroSize);
        }
        Ok(())
    }

    /// The URL the pool connects with: the configured one plus the connection parameters that
    /// bound every wait (see the module docs) and the session settings, sent in the start-up
    /// packet (`options`), so a new connection costs no extra round trip to set them.
    ///
    /// # Errors
    /// [`ConfigError`] when the URL is not a PostgreSQL URL naming a database.
    pub fn pool_url(&self) -> Result<String, ConfigError> {
        let db = DatabaseUrl::parse(&self.url)?;
        let half = (self.dead_server_after.as_secs() / 2).max(1);
        let session = [
            format!("statement_timeout={}", self.statement_timeout.as_millis()),
            format!("lock_timeout={}", self.lock_timeout.as_millis()),
            // A transaction left open by a process that stopped mid-call ends by itself, and
            // its locks with it.
            format!("idle_in_transaction_session_timeout={}", (self.call_budget * 4).as_millis()),
            // Timestamps travel as binary timestamptz, so the session time zone cannot change
            // them; UTC keeps ad-hoc `psql` output unsurprising.
            "TimeZone=UTC".to_owned(),
            // No JIT: every statement here is short, and a plan whose estimated cost passes
            // `jit_above_cost` (the counts of a line's ACTIVE tokens over its admission ranges)
            // spent ~270 ms compiling before running for 20.
            "jit=off".to_owned(),
        ];
        Ok(db.with_params(&[
            Param::Default("connect_timeout", self.connect_timeout.as_secs().max(2).to_string()),
            Param::Default("application_name", "concert".to_owned()),
            Param::Set("keepalives", "1".to_owned()),
            Param::Set("keepalives_idle", half.to_string()),
            Param::Set("keepalives_interval", half.to_string()),
            Param::Set("keepalives_count", "1".to_owned()),
            Param::Set("tcp_user_timeout", self.dead_server_after.as_millis().to_string()),
            Param::Options(session.iter().map(|s| format!("-c {s}")).collect::<Vec<_>>().join(" ")),
        ]))
    }

    /// The URL for one-off work on a dedicated connection (migrations): the configured URL
    /// with a connect timeout and keepalives, but without the pool's statement and lock
    /// timeouts (a migration may take longer than a request).
    ///
    /// # Errors
    /// [`ConfigError`] when the URL is not a PostgreSQL URL naming a database.
    pub fn maintenance_url(&self) -> Result<String, ConfigError> {
        let db = DatabaseUrl::parse(&self.url)?;
        Ok(db.with_params(&[
            Param::Default("connect_timeout", self.connect_timeout.as_secs().max(2).to_string()),
            Param::Default("application_name", "concert".to_owned()),
            Param::Default("keepalives", "1".to_owned()),
        ]))
    }
}

/// A configuration the adapter cannot work with.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum ConfigError {
    /// `DATABASE_URL` is not a URL at all.
    #[error("DATABASE_URL is not a valid URL")]
    Url(#[from] url::ParseError),
    /// `DATABASE_URL` is a URL of another kind.
    #[error("DATABASE_URL must start with postgres:// or postgresql://")]
    Scheme,
    /// `DATABASE_URL` names no database (no path after the host).
    #[error("DATABASE_URL names no database (expected postgres://host:port/<database>)")]
    NoDatabase,
    /// The database name is not UTF-8 once percent-decoded.
    #[error("the database name in DATABASE_URL is not valid UTF-8 once percent-decoded")]
    Encoding,
    /// A timeout the adapter relies on is zero.
    #[error("{0} must be greater than zero")]
    ZeroTimeout(&'static str),
    /// The pool or the issue batch has no room.
    #[error("pool_size and issue_batch_max must be at least 1")]
    ZeroSize,
}

/// A parsed `postgres://` URL and the database it names (percent-decoded).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct DatabaseUrl {
    url: Url,
    name: String,
}

/// A connection parameter the adapter adds to a URL.
enum Param {
    /// Added unless the URL sets it.
    Default(&'static str, String),
    /// Always this value (the adapter's guarantees rest on it).
    Set(&'static str, String),
    /// Appended to the URL's own `options`, so these settings win over any given there.
    Options(String),
}

/// Characters escaped in a query value: everything but letters and digits, except a few that
/// libpq reads literally. Spaces become `%20`, never `+` (libpq does not read `+` as a space).
const QUERY_VALUE: &AsciiSet = &NON_ALPHANUMERIC.remove(b'-').remove(b'_').remove(b'.').remove(b'~');

impl DatabaseUrl {
    pub(crate) fn parse(s: &str) -> Result<Self, ConfigError> {
        let url = Url::parse(s)?;
        if !matches!(url.scheme(), "postgres" | "postgresql") {
            return Err(ConfigError::Scheme);
        }
        let raw = url.path().trim_start_matches('/');
        if raw.is_empty() || raw.contains('/') {
            return Err(ConfigError::NoDatabase);
        }
        let name = percent_decode_str(raw).decode_utf8().map_err(|_| ConfigError::Encoding)?.into_owned();
        Ok(Self { url, name })
    }

    /// The database name, percent-decoded (`my%20db` is `my db`).
    pub(crate) fn name(&self) -> &str {
        &self.name
    }

    /// The same server and parameters, with the maintenance database `postgres` instead.
    pub(crate) fn maintenance(&self) -> String {
        let mut url = self.url.clone();
        url.set_path("/postgres");
        url.into()
    }

    fn with_params(&self, params: &[Param]) -> String {
        let mut pairs: Vec<(String, String)> =
            self.url.query_pairs().map(|(k, v)| (k.into_owned(), v.into_owned())).collect();
        for param in params {
            match param {
                Param::Default(key, value) => {
                    if !pairs.iter().any(|(k, _)| k == key) {
                        pairs.push(((*key).to_owned(), value.clone()));
                    }
                }
                Param::Set(key, value) => {
                    pairs.retain(|(k, _)| k != key);
                    pairs.push(((*key).to_owned(), value.clone()));
                }
                Param::Options(value) => match pairs.iter_mut().find(|(k, _)| k == "options") {
                    Some((_, given)) => *given = format!("{given} {value}"),
                    None => pairs.push(("options".to_owned(), value.clone())),
                },
            }
        }
        let query = pairs
            .iter()
            .map(|(k, v)| format!("{}={}", utf8_percent_encode(k, QUERY_VALUE), utf8_percent_encode(v, QUERY_VALUE)))
            .collect::<Vec<_>>()
            .join("&");
        let mut url = self.url.clone();
        url.set_query(Some(&query));
        url.into()
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, reason = "test code")]

    use super::*;

    #[test]
    fn the_database_name_is_percent_decoded_and_the_maintenance_url_keeps_the_rest() {
        let db = DatabaseUrl::parse("postgres://u:p%40ss@h:5433/my%20db?sslmode=disable").unwrap();
        assert_eq!(db.name(), "my db");
        assert_eq!(db.maintenance(), "postgres://u:p%40ss@h:5433/postgres?sslmode=disable");
        assert_eq!(DatabaseUrl::parse("postgresql://h/concert").unwrap().name(), "concert");
    }

    #[test]
    fn urls_that_name_no_postgres_database_are_refused() {
        assert_eq!(DatabaseUrl::parse("postgres://h:5432").unwrap_err(), ConfigError::NoDatabase);
        assert_eq!(DatabaseUrl::parse("postgres://h:5432/").unwrap_err(), ConfigError::NoDatabase);
        assert_eq!(DatabaseUrl::parse("mysql://h/db").unwrap_err(), ConfigError::Scheme);
        assert!(matches!(DatabaseUrl::parse("not a url").unwrap_err(), ConfigError::Url(_)));
    }

    #[test]
    fn the_pool_url_bounds_every_wait_and_keeps_the_callers_parameters() {
        let cfg = PgConfig::new("postgres://h/db?sslmode=disable&connect_timeout=9&options=-c%20search_path%3Dx");
        let url = cfg.pool_url().unwrap();
        let parsed = Url::parse(&url).unwrap();
        let get = |key: &str| parsed.query_pairs().find(|(k, _)| k == key).map(|(_, v)| v.into_owned());
        assert_eq!(get("sslmode").as_deref(), Some("disable"));
        assert_eq!(get("connect_timeout").as_deref(), Some("9"), "the caller's own value is kept");
        assert_eq!(get("tcp_user_timeout").as_deref(), Some("2000"));
        assert_eq!(get("keepalives_idle").as_deref(), Some("1"));
        let options = get("options").unwrap();
        assert!(options.starts_with("-c search_path=x -c statement_timeout=1500 -c lock_timeout=500"), "{options}");
        assert!(options.ends_with("-c jit=off"), "{options}");
        assert!(!url.contains('+'), "libpq reads + literally: {url}");
        assert!(url.contains("options=-c%20search_path%3Dx%20-c%20statement_timeout%3D1500"), "{url}");
    }

    #[test]
    fn zero_timeouts_are_refused() {
        let cfg = PgConfig { lock_timeout: Duration::ZERO, ..PgConfig::new("postgres://h/db") };
        assert_eq!(cfg.validate(), Err(ConfigError::ZeroTimeout("lock_timeout")));
        assert_eq!(PgConfig::new("postgres://h/db").validate(), Ok(()));
    }
}
