//! Configuration of a [`crate::RedisQueue`]: where Redis is, the key namespace, the pool and
//! its timeouts.

use std::fmt;
use std::time::Duration;

use thiserror::Error;

/// The contract's default `REDIS_URL`.
pub const DEFAULT_URL: &str = "redis://127.0.0.1:6379";

/// The default key namespace.
pub const DEFAULT_PREFIX: &str = "concert";

/// How long a call may wait at each step. Together they bound a call when Redis is down or
/// hung: at most `checkout` for a connection (which includes opening one, each attempt bounded
/// by `connect`), then `write` to send the script and `read` for its reply, then, for a write
/// that must survive a failover, `replica_ack` for a replica's confirmation. The defaults, 2 s
/// plus 1 s plus 1 s plus 0.75 s, keep every call under the contract's 5 s, so a request
/// answers 503 rather than hangs. In practice an outage costs less: once a connection attempt has failed,
/// calls fail at once until Redis answers again (`probe_interval`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RedisTimeouts {
    /// Opening a TCP connection and its handshake.
    pub connect: Duration,
    /// Waiting for a reply.
    pub read: Duration,
    /// Sending a command.
    pub write: Duration,
    /// Waiting for a pooled connection (including opening a new one).
    pub checkout: Duration,
    /// How long a write that must survive a failover waits for its replicas (`WAIT`, see
    /// [`RedisConfig::replica_acks`]) before the call fails with `Unavailable`.
    pub replica_ack: Duration,
    /// While the last connection attempt failed, calls fail at once, except one per this
    /// interval, which asks the pool (so that a connection attempt is always under way).
    pub probe_interval: Duration,
}

impl Default for RedisTimeouts {
    fn default() -> Self {
        Self {
            connect: Duration::from_secs(1),
            read: Duration::from_secs(1),
            write: Duration::from_secs(1),
            checkout: Duration::from_secs(2),
            replica_ack: Duration::from_millis(750),
            probe_interval: Duration::from_millis(500),
        }
    }
}

/// Where and how to reach Redis.
#[derive(Clone, PartialEq, Eq)]
pub struct RedisConfig {
    /// `REDIS_URL`: `redis://[user:password@]host[:port][/db]`, or `redis+unix:///path`; or a
    /// Redis Cluster: a comma-separated list of its nodes' URLs (any of them that answers
    /// gives the slot map, so listing a few masters is enough).
    pub url: String,
    /// Every key is `{prefix}:...`, so deployments with different prefixes share a server
    /// (the braces make the prefix a cluster hash tag: one deployment's keys share a slot,
    /// which a script touching several of them needs).
    pub prefix: String,
    /// Most connections open at once.
    pub pool_size: u32,
    /// See [`RedisTimeouts`].
    pub timeouts: RedisTimeouts,
    /// How long an EXPIRED token stays stored (so a poll still answers EXPIRED) before Redis
    /// drops it: the bound on the memory spent on tokens that left the line.
    pub expired_retention: Duration,
    /// How many replicas must confirm a write that must survive a failover (an issue, an
    /// admission, a use-up: `WAIT n` after it) before the call succeeds; `None` is 1 on a
    /// cluster and 0 (no `WAIT`) on one Redis. See the crate docs, "Redis Cluster".
    pub replica_acks: Option<u32>,
}

impl Default for RedisConfig {
    /// [`DEFAULT_URL`], prefix [`DEFAULT_PREFIX`], 16 connections, default timeouts, expired
    /// tokens kept a day.
    fn default() -> Self {
        Self {
            url: DEFAULT_URL.to_owned(),
            prefix: DEFAULT_PREFIX.to_owned(),
            pool_size: 16,
            timeouts: RedisTimeouts::default(),
            expired_retention: Duration::from_secs(86_400),
            replica_acks: None,
        }
    }
}

impl RedisConfig {
    /// The defaults with another URL.
    #[must_use]
    pub fn with_url(url: impl Into<String>) -> Self {
        Self { url: url.into(), ..Self::default() }
    }

    /// The defaults with another URL and prefix.
    #[must_use]
    pub fn with_url_and_prefix(url: impl Into<String>, prefix: impl Into<String>) -> Self {
        Self { prefix: prefix.into(), ..Self::with_url(url) }
    }

    /// The node URLs: one for one Redis, several for a cluster.
    #[must_use]
    pub fn nodes(&self) -> Vec<&str> {
        self.url.split(',').map(str::trim).filter(|u| !u.is_empty()).collect()
    }

    /// Whether the URL names a Redis Cluster (several nodes).
    #[must_use]
    pub fn is_cluster(&self) -> bool {
        self.nodes().len() > 1
    }

    /// Replicas a lasting write waits for ([`Self::replica_acks`] or its default).
    #[must_use]
    pub fn effective_replica_acks(&self) -> u32 {
        self.replica_acks.unwrap_or(u32::from(self.is_cluster()))
    }

    /// The URL with any password replaced by `***`, for logs.
    #[must_use]
    pub fn redacted_url(&self) -> String {
        let one = |node: &str| match url::Url::parse(node) {
            Ok(mut u) => {
                if u.password().is_some() {
                    let _ = u.set_password(Some("***"));
                }
                u.to_string()
            }
            Err(_) => "<invalid url>".to_owned(),
        };
        self.nodes().into_iter().map(one).collect::<Vec<_>>().join(",")
    }

    /// Checks everything that can be checked without a server.
    pub(crate) fn validate(&self) -> Result<(), ConfigError> {
        let nodes = self.nodes();
        if nodes.is_empty() {
            return Err(ConfigError::InvalidUrl("no URL".into()));
        }
        for node in &nodes {
            let url = url::Url::parse(node).map_err(|e| ConfigError::InvalidUrl(e.to_string()))?;
            let allowed: &[&str] = if nodes.len() > 1 { &["redis"] } else { &["redis", "redis+unix", "unix"] };
            if !allowed.contains(&url.scheme()) {
                return Err(ConfigError::InvalidUrl(format!("unsupported scheme `{}` (use redis://)", url.scheme())));
            }
            if nodes.len() > 1 && url.path().trim_start_matches('/').parse::<u32>().is_ok_and(|db| db != 0) {
                return Err(ConfigError::InvalidUrl("a Redis Cluster has only database 0".into()));
            }
        }
        let prefix_ok = (1..=64).contains(&self.prefix.len())
            && self.prefix.chars().all(|c| c.is_ascii_graphic() && c != '{' && c != '}');
        if !prefix_ok {
            return Err(ConfigError::InvalidPrefix);
        }
        if self.pool_size == 0 {
            return Err(ConfigError::InvalidPoolSize);
        }
        let t = &self.timeouts;
        if [t.connect, t.read, t.write, t.checkout, t.probe_interval, t.replica_ack].iter().any(Duration::is_zero) {
            return Err(ConfigError::InvalidTimeout);
        }
        if self.expired_retention < Duration::from_millis(1) {
            return Err(ConfigError::InvalidRetention);
        }
        Ok(())
    }
}

// The URL may carry a password: never print it.
impl fmt::Debug for RedisConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RedisConfig")
            .field("url", &self.redacted_url())
            .field("prefix", &self.prefix)
            .field("pool_size", &self.pool_size)
            .field("timeouts", &self.timeouts)
            .field("expired_retention", &self.expired_retention)
            .field("replica_acks", &self.replica_acks)
            .finish()
    }
}

/// A [`RedisConfig`] that cannot work, whatever the server does. (A server that is down is not
/// one: [`crate::RedisQueue::new`] connects lazily.)
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum ConfigError {
    /// `REDIS_URL` does not parse, or names a scheme this build cannot speak.
    #[error("REDIS_URL is not a usable Redis URL: {0}")]
    InvalidUrl(String),
    /// The prefix is empty, longer than 64 characters, or holds whitespace or braces.
    #[error("the Redis key prefix must be 1 to 64 visible ASCII characters without braces")]
    InvalidPrefix,
    /// A pool of no connections.
    #[error("the Redis pool size must be at least 1")]
    InvalidPoolSize,
    /// A zero timeout (it would mean "wait forever" to the socket layer).
    #[error("every Redis timeout must be positive")]
    InvalidTimeout,
    /// Expired tokens would be dropped at once, so a poll could not answer EXPIRED.
    #[error("expired tokens must be kept at least a millisecond")]
    InvalidRetention,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_defaults_are_valid_and_match_the_contract() {
        let cfg = RedisConfig::default();
        assert_eq!(cfg.url, "redis://127.0.0.1:6379");
        assert_eq!(cfg.prefix, "concert");
        assert_eq!(cfg.validate(), Ok(()));
        let t = cfg.timeouts;
        assert!(
            t.checkout + t.write + t.read + t.replica_ack < Duration::from_secs(5),
            "a call fails within the contract's 5 s"
        );
    }

    #[test]
    fn bad_urls_prefixes_sizes_and_timeouts_are_refused() {
        let bad_url = RedisConfig::with_url("http://127.0.0.1:6379");
        assert!(matches!(bad_url.validate(), Err(ConfigError::InvalidUrl(_))));
        assert!(matches!(RedisConfig::with_url("not a url").validate(), Err(ConfigError::InvalidUrl(_))));
        for prefix in ["", "a b", "{x}", &"p".repeat(65)] {
            let cfg = RedisConfig::with_url_and_prefix(DEFAULT_URL, prefix);
            assert_eq!(cfg.validate(), Err(ConfigError::InvalidPrefix), "{prefix:?}");
        }
        let cfg = RedisConfig { pool_size: 0, ..RedisConfig::default() };
        assert_eq!(cfg.validate(), Err(ConfigError::InvalidPoolSize));
        let cfg = RedisConfig {
            timeouts: RedisTimeouts { read: Duration::ZERO, ..RedisTimeouts::default() },
            ..RedisConfig::default()
        };
        assert_eq!(cfg.validate(), Err(ConfigError::InvalidTimeout));
    }

    #[test]
    fn a_comma_separated_list_is_a_cluster_that_waits_for_one_replica() {
        let cfg = RedisConfig::with_url("redis://10.0.0.1:7000, redis://10.0.0.2:7000,redis://:pw@10.0.0.3:7000");
        assert_eq!(cfg.validate(), Ok(()));
        assert!(cfg.is_cluster());
        assert_eq!(cfg.nodes().len(), 3);
        assert_eq!(cfg.effective_replica_acks(), 1);
        assert!(!cfg.redacted_url().contains("pw"), "{}", cfg.redacted_url());
        assert_eq!(RedisConfig::default().effective_replica_acks(), 0);
        let explicit = RedisConfig { replica_acks: Some(0), ..cfg };
        assert_eq!(explicit.effective_replica_acks(), 0);
        for bad in ["redis://a:1,http://b:2", "redis://a:1,redis://b:2/3", " , "] {
            assert!(matches!(RedisConfig::with_url(bad).validate(), Err(ConfigError::InvalidUrl(_))), "{bad}");
        }
    }

    #[test]
    fn the_password_never_shows() {
        let cfg = RedisConfig::with_url("redis://app:s3cret@10.0.0.1:6380/2");
        assert_eq!(cfg.validate(), Ok(()));
        let shown = format!("{cfg:?} {}", cfg.redacted_url());
        assert!(!shown.contains("s3cret"), "{shown}");
        assert!(shown.contains("10.0.0.1:6380"), "{shown}");
    }
}
