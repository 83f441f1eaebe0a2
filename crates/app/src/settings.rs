//! Configuration: the command line, with the contract's environment variables as fallbacks
//! (a flag wins over its variable, which wins over the default). Every value is checked here,
//! before anything starts, and an error names the flag and its variable.

use std::time::Duration as StdDuration;

use adapters_http::IdentityConfig;
use adapters_local::poll_cache::PollCacheSettings;
use clap::builder::BoolishValueParser;
use clap::{ArgAction, Args, CommandFactory as _, FromArgMatches as _, Parser, Subcommand, ValueEnum};
use domain::queue::{limits, AdmissionPolicy, QueueSettings};
use domain::service::Policy;
use ipnet::IpNet;
use scheduler::SchedulerSettings;

/// The contract's default database.
pub const DEFAULT_DATABASE_URL: &str = "postgres://postgres@127.0.0.1:5432/concert";

/// The contract's default Redis.
pub const DEFAULT_REDIS_URL: &str = "redis://127.0.0.1:6379";

/// `concert`: the concert reservation service.
#[derive(Debug, Clone, Parser)]
#[command(name = "concert", version, about = "Concert reservation service", propagate_version = true)]
pub struct Cli {
    /// Logging, for every command.
    #[command(flatten)]
    pub log: LogSettings,
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// The commands of the binary.
#[derive(Debug, Clone, Subcommand)]
pub enum Command {
    /// Serve HTTP and the scheduler; the database is created and migrated as soon as it can be
    /// reached (until then `/health/ready` answers 503).
    Serve(Box<Settings>),
    /// Create the database if missing, run pending migrations, exit.
    Migrate(DatabaseSettings),
    /// Create and migrate the database if needed, insert the demo catalogue unless present
    /// and keep at least three future schedules per demo concert, exit.
    SeedDemo(DatabaseSettings),
    /// Print every violated storage invariant; exit non-zero if there is any.
    CheckInvariants(DatabaseSettings),
    /// Print a room's drawn order from its recorded seed: for each entrant, in the byte-wise
    /// order of the token values, the position the draw gives it (see `docs/api.md`, "Checking
    /// a draw").
    DrawOrder(DrawOrderArgs),
}

/// `concert draw-order`.
#[derive(Debug, Clone, PartialEq, Eq, Args)]
pub struct DrawOrderArgs {
    /// The draw's seed (`draw.seed` of `GET /admin/rooms/{roomId}`).
    #[arg(long)]
    pub seed: u64,
    /// How many tokens it ordered (`draw.entrants`).
    #[arg(long)]
    pub entrants: u64,
}

/// Log output format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum LogFormat {
    /// Human-readable lines.
    Text,
    /// One JSON object per line, for log shippers.
    Json,
}

/// How and what to log.
#[derive(Debug, Clone, PartialEq, Eq, Args)]
pub struct LogSettings {
    /// Log line format.
    #[arg(long, env = "LOG_FORMAT", value_enum, default_value_t = LogFormat::Text, global = true)]
    pub log_format: LogFormat,
    /// Which logs to keep, in `tracing` filter syntax (e.g. `info,app=debug`).
    #[arg(long = "log", env = "RUST_LOG", default_value = "info", global = true)]
    pub log_filter: String,
}

/// Which store backs the service.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum StoreKind {
    /// PostgreSQL at `DATABASE_URL`.
    Postgres,
    /// In this process's memory, with the demo catalogue loaded; nothing survives a restart.
    Memory,
}

/// Where the waiting queue lives.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum QueueStoreKind {
    /// With everything else (PostgreSQL, or memory with `--store memory`).
    Postgres,
    /// Redis at `REDIS_URL`; everything else stays in PostgreSQL.
    Redis,
}

/// How to reach PostgreSQL.
#[derive(Debug, Clone, PartialEq, Eq, Args)]
pub struct DatabaseSettings {
    /// PostgreSQL URL; the database is created if missing.
    #[arg(long, env = "DATABASE_URL", default_value = DEFAULT_DATABASE_URL)]
    pub database_url: String,
    /// Most connections the pool opens (also the most token issues in flight at once: the
    /// largest group-commit batch).
    #[arg(long, env = "DATABASE_POOL_SIZE", default_value_t = 16, value_parser = clap::value_parser!(u32).range(1..=1000))]
    pub database_pool_size: u32,
    /// Most store calls in flight at once, token issue apart (at most the pool's size): about
    /// two per core of the database, summed over the instances (see adapters_http::state).
    #[arg(long, env = "STORE_CALLS_AT_ONCE", default_value_t = 4, value_parser = clap::value_parser!(u32).range(1..=1000))]
    pub store_calls_at_once: u32,
    /// Milliseconds to wait for a pooled connection before answering 503.
    #[arg(long, env = "DATABASE_CONNECT_TIMEOUT_MILLIS", default_value_t = 1000, value_parser = clap::value_parser!(u64).range(10..=60_000))]
    pub database_connect_timeout_millis: u64,
    /// Milliseconds a statement waits for a row lock before giving up (503, nothing done).
    #[arg(long, env = "DATABASE_LOCK_TIMEOUT_MILLIS", default_value_t = 500, value_parser = clap::value_parser!(u64).range(1..=60_000))]
    pub database_lock_timeout_millis: u64,
    /// Milliseconds any one statement may run.
    #[arg(long, env = "DATABASE_STATEMENT_TIMEOUT_MILLIS", default_value_t = 1500, value_parser = clap::value_parser!(u64).range(10..=600_000))]
    pub database_statement_timeout_millis: u64,
}

impl DatabaseSettings {
    /// The store slots: `STORE_CALLS_AT_ONCE`, but never more than the pool has connections
    /// (calls past them would wait in the pool's unfair queue instead of the slots' fair one).
    #[must_use]
    pub fn store_slots(&self) -> u32 {
        self.store_calls_at_once.min(self.database_pool_size)
    }
}

/// How to reach Redis (with `QUEUE_STORE=redis`).
#[derive(Debug, Clone, PartialEq, Eq, Args)]
pub struct RedisSettings {
    /// Redis URL; a comma-separated list of node URLs is a Redis Cluster (see
    /// `adapters_redis`, "Redis Cluster": each room's line in its own hash slot, lasting
    /// writes confirmed by a replica).
    #[arg(long, env = "REDIS_URL", default_value = DEFAULT_REDIS_URL)]
    pub redis_url: String,
    /// Prefix of every key, so several deployments can share one Redis.
    #[arg(long, env = "REDIS_KEY_PREFIX", default_value = "concert")]
    pub redis_key_prefix: String,
}

// Upper bounds keep every duration far inside `time::Duration`'s and `i64`'s range.
const MAX_SECS: u64 = 366 * 24 * 3600;

/// Everything `concert serve` needs.
#[derive(Debug, Clone, PartialEq, Eq, Args)]
pub struct Settings {
    /// Where the data lives.
    #[arg(long, env = "STORE", value_enum, default_value_t = StoreKind::Postgres)]
    pub store: StoreKind,
    /// Where the waiting queue lives.
    #[arg(long, env = "QUEUE_STORE", value_enum, default_value_t = QueueStoreKind::Postgres)]
    pub queue_store: QueueStoreKind,
    /// PostgreSQL settings (ignored with `--store memory`).
    #[command(flatten)]
    pub database: DatabaseSettings,
    /// Redis settings (used with `--queue-store redis`).
    #[command(flatten)]
    pub redis: RedisSettings,
    /// HTTP listen address (`host:port`; port 0 picks a free one).
    #[arg(long, env = "BIND_ADDR", default_value = "127.0.0.1:8080")]
    pub bind_addr: String,
    /// M: seconds between admission ticks (until an operator changes it).
    #[arg(long, env = "QUEUE_ADMIT_INTERVAL_SECS", default_value_t = 60, value_parser = clap::value_parser!(u64).range(unsigned(&limits::INTERVAL_SECS)))]
    pub queue_admit_interval_secs: u64,
    /// N: waiting tokens one admission tick activates, oldest first (until an operator changes it).
    #[arg(long, env = "QUEUE_ADMIT_BATCH", default_value_t = 100, value_parser = clap::value_parser!(u32).range(wide(&limits::BATCH)))]
    pub queue_admit_batch: u32,
    /// Seconds an ACTIVE token stays valid after activation (until an operator changes it).
    #[arg(long, env = "QUEUE_ACTIVE_TTL_SECS", default_value_t = 600, value_parser = clap::value_parser!(u64).range(unsigned(&limits::STARTING_ACTIVE_TTL_SECS)))]
    pub queue_active_ttl_secs: u64,
    /// Optional cap on ACTIVE tokens at once (until an operator changes it).
    #[arg(long, env = "QUEUE_MAX_ACTIVE", value_parser = clap::value_parser!(u32).range(wide(&limits::MAX_ACTIVE)))]
    pub queue_max_active: Option<u32>,
    /// Seconds a reservation holds its seat unpaid.
    #[arg(long, env = "SEAT_HOLD_SECS", default_value_t = 300, value_parser = clap::value_parser!(u64).range(1..=MAX_SECS))]
    pub seat_hold_secs: u64,
    /// Most live (HELD, unexpired) reservations one user may have at once.
    #[arg(long, env = "MAX_HOLDS_PER_USER", default_value_t = 4, value_parser = clap::value_parser!(u32).range(1..=10_000))]
    pub max_holds_per_user: u32,
    /// Most `POST /queue/tokens` per client address per minute; 0 is no limit.
    #[arg(long, env = "ISSUE_RATE_PER_MIN", default_value_t = 0, value_parser = clap::value_parser!(u32).range(0..=1_000_000))]
    pub issue_rate_per_min: u32,
    /// Comma-separated CIDRs whose `X-Forwarded-For` names the client address.
    #[arg(long, env = "TRUSTED_PROXIES", value_delimiter = ',', value_parser = parse_cidr)]
    pub trusted_proxies: Vec<IpNet>,
    /// How long a recorded `Idempotency-Key` outcome is kept (at least), in seconds.
    #[arg(long, env = "IDEMPOTENCY_TTL_SECS", default_value_t = 86_400, value_parser = clap::value_parser!(u64).range(60..=MAX_SECS))]
    pub idempotency_ttl_secs: u64,
    /// Bearer secret of the operator API and `/metrics`; unset turns `/admin/*` off (404).
    #[arg(long, env = "ADMIN_TOKEN", hide_env_values = true, value_parser = parse_admin_token)]
    pub admin_token: Option<String>,
    /// `false` runs an API-only instance (no admission, expiry or hold release here).
    #[arg(
        long,
        env = "SCHEDULER_ENABLED",
        default_value_t = true,
        action = ArgAction::Set,
        value_parser = BoolishValueParser::new()
    )]
    pub scheduler_enabled: bool,
    /// How often the scheduler checks for due work and changed settings, in milliseconds
    /// (capped at the admission interval).
    #[arg(long, env = "SCHEDULER_CHECK_MILLIS", default_value_t = 1000, value_parser = clap::value_parser!(u64).range(10..=MAX_SECS * 1000))]
    pub scheduler_check_millis: u64,
    /// How stale a WAITING token's poll may be, in milliseconds: polls are answered from
    /// memory with the queue cursor re-read at most this often (0: every poll reads the store).
    #[arg(long, env = "QUEUE_POLL_CACHE_MILLIS", default_value_t = 250, value_parser = clap::value_parser!(u64).range(0..=60_000))]
    pub queue_poll_cache_millis: u64,
    /// Most WAITING tokens the poll caches keep, `main`'s and every room's together (about 150 bytes each).
    #[arg(long, env = "QUEUE_POLL_CACHE_CAPACITY", default_value_t = 1_000_000, value_parser = clap::value_parser!(u64).range(1..=100_000_000))]
    pub queue_poll_cache_capacity: u64,
    /// HTTP worker threads (default: one per core).
    #[arg(long, env = "HTTP_WORKERS", value_parser = clap::value_parser!(u16).range(1..=256))]
    pub http_workers: Option<u16>,
    /// Signed identities (off unless `AUTH_ISSUER` is set).
    #[command(flatten)]
    pub auth: AuthSettings,
}

/// Signed identities: with `AUTH_ISSUER` set, `POST /queue/tokens` and the balance routes trust
/// only a JWT of that OpenID Connect issuer, not the `userId` a client names.
#[derive(Debug, Clone, PartialEq, Eq, Args)]
pub struct AuthSettings {
    /// OpenID Connect issuer URL (the `iss` of its tokens); unset leaves identity off.
    #[arg(long, env = "AUTH_ISSUER")]
    pub auth_issuer: Option<String>,
    /// The `aud` tokens must carry (comma-separated for several); required with `AUTH_ISSUER`.
    #[arg(long, env = "AUTH_AUDIENCE", value_delimiter = ',')]
    pub auth_audience: Vec<String>,
    /// Where the signing keys are (default: the `jwks_uri` of the issuer's discovery document).
    #[arg(long, env = "AUTH_JWKS_URL")]
    pub auth_jwks_url: Option<String>,
    /// Seconds between scheduled fetches of the signing keys.
    #[arg(long, env = "AUTH_JWKS_REFRESH_SECS", default_value_t = 300, value_parser = clap::value_parser!(u64).range(10..=86_400))]
    pub auth_jwks_refresh_secs: u64,
    /// The claim holding the user's UUID.
    #[arg(long, env = "AUTH_USER_CLAIM", default_value = "sub")]
    pub auth_user_claim: String,
    /// The public client (authorization code with PKCE) the buyer's page signs in as.
    #[arg(long, env = "AUTH_PAGE_CLIENT_ID")]
    pub auth_page_client_id: Option<String>,
}

impl AuthSettings {
    /// The identity settings, `None` when `AUTH_ISSUER` is unset.
    ///
    /// # Errors
    /// A text naming the variable when `AUTH_ISSUER` or `AUTH_JWKS_URL` is not an https URL
    /// (http only on a loopback host), or `AUTH_AUDIENCE` is missing.
    pub fn identity(&self) -> Result<Option<IdentityConfig>, String> {
        let Some(issuer) = self.auth_issuer.as_deref().map(str::trim).filter(|s| !s.is_empty()) else {
            return Ok(None);
        };
        check_url(issuer, "AUTH_ISSUER (--auth-issuer)")?;
        if let Some(url) = &self.auth_jwks_url {
            check_url(url, "AUTH_JWKS_URL (--auth-jwks-url)")?;
        }
        let audiences: Vec<String> =
            self.auth_audience.iter().map(|a| a.trim().to_owned()).filter(|a| !a.is_empty()).collect();
        if audiences.is_empty() {
            return Err("AUTH_AUDIENCE (--auth-audience) is required with AUTH_ISSUER: tokens the issuer made for \
                        another application must not be accepted here"
                .to_owned());
        }
        let claim = self.auth_user_claim.trim();
        if claim.is_empty() {
            return Err("AUTH_USER_CLAIM (--auth-user-claim) must name a claim".to_owned());
        }
        Ok(Some(IdentityConfig {
            issuer: issuer.to_owned(),
            audiences,
            jwks_url: self.auth_jwks_url.clone(),
            refresh_every: StdDuration::from_secs(self.auth_jwks_refresh_secs),
            user_claim: claim.to_owned(),
            page_client_id: self.auth_page_client_id.clone().filter(|c| !c.is_empty()),
        }))
    }
}

/// An https URL, or http to a loopback host (a provider on this machine, as in the tests):
/// keys fetched in clear over a network could be swapped by anyone on the path.
fn check_url(url: &str, name: &str) -> Result<(), String> {
    let parsed = url::Url::parse(url).map_err(|e| format!("{name} is not a URL: {e}"))?;
    let loopback = match parsed.host() {
        Some(url::Host::Domain(d)) => d == "localhost",
        Some(url::Host::Ipv4(ip)) => ip.is_loopback(),
        Some(url::Host::Ipv6(ip)) => ip.is_loopback(),
        None => false,
    };
    match parsed.scheme() {
        "https" => Ok(()),
        "http" if loopback => Ok(()),
        _ => Err(format!("{name} must be an https URL (http only to a loopback host), not {url}")),
    }
}

/// A domain limit of seconds as the range clap's `u64` parser takes (the limits are positive).
fn unsigned(range: &std::ops::RangeInclusive<i64>) -> std::ops::RangeInclusive<u64> {
    u64::try_from(*range.start()).unwrap_or(0)..=u64::try_from(*range.end()).unwrap_or(0)
}

/// A domain limit as the `i64` range clap's `u32` parser takes.
fn wide(range: &std::ops::RangeInclusive<u32>) -> std::ops::RangeInclusive<i64> {
    i64::from(*range.start())..=i64::from(*range.end())
}

fn parse_cidr(s: &str) -> Result<IpNet, String> {
    adapters_http::TrustedProxies::parse_one(s).map_err(|e| e.to_string())
}

fn parse_admin_token(s: &str) -> Result<String, String> {
    if s.len() >= 16 && s.bytes().all(|b| b.is_ascii_graphic()) {
        Ok(s.to_owned())
    } else {
        Err("use at least 16 visible ASCII characters (e.g. `openssl rand -hex 32`)".to_owned())
    }
}

/// Only `serve`'s flags, for [`Settings::from_flags`].
#[derive(Debug, Parser)]
#[command(name = "concert-serve", no_binary_name = true)]
struct ServeOnly {
    #[command(flatten)]
    settings: Settings,
}

impl Settings {
    /// Parses `serve`'s flags (without the command name), with the environment as fallback:
    /// `Settings::from_flags(["--store", "memory", "--bind-addr", "127.0.0.1:0"])`.
    ///
    /// # Errors
    /// A [`clap::Error`] describing the bad flag or value.
    pub fn from_flags<I, T>(flags: I) -> Result<Self, clap::Error>
    where
        I: IntoIterator<Item = T>,
        T: Into<std::ffi::OsString> + Clone,
    {
        ServeOnly::try_parse_from(flags).map(|s| s.settings)
    }

    /// Parses `serve`'s flags alone, ignoring the environment: what tests use, so that a
    /// developer's `DATABASE_URL` or `ADMIN_TOKEN` never leaks into them.
    ///
    /// # Errors
    /// A [`clap::Error`] describing the bad flag or value.
    pub fn from_flags_only<I, T>(flags: I) -> Result<Self, clap::Error>
    where
        I: IntoIterator<Item = T>,
        T: Into<std::ffi::OsString> + Clone,
    {
        let command = ServeOnly::command().mut_args(|arg| arg.env(None));
        let matches = command.try_get_matches_from(flags)?;
        ServeOnly::from_arg_matches(&matches).map(|s| s.settings)
    }

    /// The settings fixed for the life of the instance.
    #[must_use]
    pub fn policy(&self) -> Policy {
        Policy {
            hold: secs(self.seat_hold_secs),
            max_holds_per_user: self.max_holds_per_user,
            idempotency_ttl: secs(self.idempotency_ttl_secs),
            room_defaults: self.starting_queue_settings(),
            ..Policy::default()
        }
    }

    /// The waiting room's starting settings: in force until an operator changes them (the
    /// change is stored and wins over these from then on, on every instance).
    #[must_use]
    pub fn starting_queue_settings(&self) -> QueueSettings {
        QueueSettings {
            paused: false,
            admission: AdmissionPolicy {
                batch: self.queue_admit_batch,
                interval: secs(self.queue_admit_interval_secs),
                active_ttl: secs(self.queue_active_ttl_secs),
                max_active: self.queue_max_active,
                abandon_after: None,
            },
        }
    }

    /// The poll cache's settings, `None` when `QUEUE_POLL_CACHE_MILLIS` is 0.
    #[must_use]
    pub fn poll_cache_settings(&self) -> Option<PollCacheSettings> {
        (self.queue_poll_cache_millis > 0).then(|| PollCacheSettings {
            cursor_ttl: StdDuration::from_millis(self.queue_poll_cache_millis),
            capacity: usize::try_from(self.queue_poll_cache_capacity).unwrap_or(usize::MAX),
        })
    }

    /// How long this instance keeps the live settings in memory: one scheduler check.
    #[must_use]
    pub fn settings_cache_ttl(&self) -> StdDuration {
        StdDuration::from_millis(self.scheduler_check_millis)
    }

    /// How often the scheduler checks: `SCHEDULER_CHECK_MILLIS`, at most the admission interval.
    #[must_use]
    pub fn scheduler_settings(&self) -> SchedulerSettings {
        SchedulerSettings::new(
            StdDuration::from_millis(self.scheduler_check_millis),
            StdDuration::from_secs(self.queue_admit_interval_secs),
        )
    }
}

fn secs(s: u64) -> time::Duration {
    // The parsers cap every value far below i64::MAX.
    time::Duration::seconds(i64::try_from(s).unwrap_or(i64::MAX))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, reason = "test code")]

    use super::*;

    #[test]
    fn the_cli_is_well_formed() {
        Cli::command().debug_assert();
    }

    #[test]
    fn policy_queue_settings_and_scheduler_follow_the_flags() {
        let s = Settings::from_flags_only([
            "--queue-admit-interval-secs",
            "2",
            "--queue-admit-batch",
            "7",
            "--queue-active-ttl-secs",
            "30",
            "--seat-hold-secs",
            "9",
            "--queue-max-active",
            "50",
            "--scheduler-check-millis",
            "5000",
            "--max-holds-per-user",
            "2",
            "--trusted-proxies",
            "10.0.0.0/8, 192.168.1.7",
        ])
        .unwrap();
        let q = s.starting_queue_settings();
        assert_eq!(q.admission.batch, 7);
        assert_eq!(q.admission.interval, time::Duration::seconds(2));
        assert_eq!(q.admission.active_ttl, time::Duration::seconds(30));
        assert_eq!(q.admission.max_active, Some(50));
        assert!(!q.paused);
        let p = s.policy();
        assert_eq!((p.hold, p.max_holds_per_user), (time::Duration::seconds(9), 2));
        assert_eq!(s.scheduler_settings().check_every, StdDuration::from_secs(2), "capped at the interval");
        assert_eq!(s.trusted_proxies.len(), 2);
        assert_eq!(s.trusted_proxies[1].to_string(), "192.168.1.7/32");
    }

    #[test]
    fn out_of_range_values_are_refused_naming_the_variable() {
        assert!(Settings::from_flags_only(["--queue-admit-interval-secs", "0"]).is_err());
        assert!(Settings::from_flags_only(["--queue-admit-batch", "-1"]).is_err());
        assert!(Settings::from_flags_only(["--store", "mongo"]).is_err());
        assert!(Settings::from_flags_only(["--scheduler-enabled", "maybe"]).is_err());
        assert!(Settings::from_flags_only(["--trusted-proxies", "10.0.0.0/33"]).is_err());
        assert!(Settings::from_flags_only(["--admin-token", "short"]).is_err());
        assert!(Settings::from_flags_only(["--auth-jwks-refresh-secs", "1"]).is_err());
        let e = Settings::from_flags_only(["--queue-admit-batch", "0"]).unwrap_err().to_string();
        assert!(e.contains("QUEUE_ADMIT_BATCH"), "{e}");
    }

    #[test]
    fn identity_is_off_by_default_and_needs_an_audience_and_a_safe_url() {
        let off = Settings::from_flags_only::<[&str; 0], &str>([]).unwrap();
        assert_eq!(off.auth.identity().unwrap(), None);
        let on = |flags: &[&str]| Settings::from_flags_only(flags.iter().copied()).unwrap().auth.identity();
        let c =
            on(&["--auth-issuer", "https://id.example.com", "--auth-audience", "shop,concert-page"]).unwrap().unwrap();
        assert_eq!(c.audiences, ["shop", "concert-page"]);
        assert_eq!((c.user_claim.as_str(), c.refresh_every), ("sub", StdDuration::from_secs(300)));
        assert!(on(&["--auth-issuer", "https://id.example.com"]).unwrap_err().contains("AUTH_AUDIENCE"));
        let e = on(&["--auth-issuer", "http://id.example.com", "--auth-audience", "a"]).unwrap_err();
        assert!(e.contains("AUTH_ISSUER"), "{e}");
        assert!(on(&["--auth-issuer", "http://127.0.0.1:9000", "--auth-audience", "a"]).is_ok());
        let e =
            on(&["--auth-issuer", "https://id.example.com", "--auth-audience", "a", "--auth-jwks-url", "ftp://x/keys"])
                .unwrap_err();
        assert!(e.contains("AUTH_JWKS_URL"), "{e}");
    }
}
