//! Configuration: the command line, with the contract's environment variables as fallbacks
//! (a flag wins over its variable, which wins over the default).

use domain::queue_cache::QueueCacheSettings;
use std::time::Duration as StdDuration;

use adapters_postgres::PgConfig;
use clap::builder::BoolishValueParser;
use clap::{ArgAction, Args, Parser, Subcommand, ValueEnum};
use domain::queue::AdmissionPolicy;
use domain::service::Policy;
use scheduler::SchedulerSettings;

/// The contract's default database.
pub const DEFAULT_DATABASE_URL: &str = "postgres://postgres@127.0.0.1:5432/concert";

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
    /// Create the database if missing, run pending migrations, then serve HTTP and the scheduler.
    Serve(Settings),
    /// Create the database if missing, run pending migrations, exit.
    Migrate(DatabaseSettings),
    /// Create and migrate the database if needed, insert the demo catalogue unless present, exit.
    SeedDemo(DatabaseSettings),
    /// Print every violated storage invariant; exit non-zero if there is any.
    CheckInvariants(DatabaseSettings),
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

/// How to reach PostgreSQL.
#[derive(Debug, Clone, PartialEq, Eq, Args)]
pub struct DatabaseSettings {
    /// PostgreSQL URL; the database is created if missing.
    #[arg(long, env = "DATABASE_URL", default_value = DEFAULT_DATABASE_URL)]
    pub database_url: String,
    /// Most connections the pool opens.
    #[arg(long, env = "DATABASE_POOL_SIZE", default_value_t = 10, value_parser = clap::value_parser!(u32).range(1..=1000))]
    pub database_pool_size: u32,
    /// Seconds to wait for a database connection before answering 503.
    #[arg(long, env = "DATABASE_CONNECT_TIMEOUT_SECS", default_value_t = 2, value_parser = clap::value_parser!(u64).range(1..=60))]
    pub database_connect_timeout_secs: u64,
}

impl DatabaseSettings {
    /// The PostgreSQL adapter's configuration.
    #[must_use]
    pub fn pg_config(&self) -> PgConfig {
        PgConfig {
            pool_size: self.database_pool_size,
            connect_timeout: StdDuration::from_secs(self.database_connect_timeout_secs),
            ..PgConfig::new(self.database_url.clone())
        }
    }
}

// Upper bounds keep every duration far inside `time::Duration`'s and `i64`'s range.
const MAX_SECS: u64 = 366 * 24 * 3600;

/// Everything `concert serve` needs.
#[derive(Debug, Clone, PartialEq, Eq, Args)]
pub struct Settings {
    /// Where the data lives.
    #[arg(long, env = "STORE", value_enum, default_value_t = StoreKind::Postgres)]
    pub store: StoreKind,
    /// PostgreSQL settings (ignored with `--store memory`).
    #[command(flatten)]
    pub database: DatabaseSettings,
    /// HTTP listen address (`host:port`; port 0 picks a free one).
    #[arg(long, env = "BIND_ADDR", default_value = "127.0.0.1:8080")]
    pub bind_addr: String,
    /// M: seconds between admission ticks.
    #[arg(long, env = "QUEUE_ADMIT_INTERVAL_SECS", default_value_t = 60, value_parser = clap::value_parser!(u64).range(1..=MAX_SECS))]
    pub queue_admit_interval_secs: u64,
    /// N: waiting tokens one admission tick activates, oldest first.
    #[arg(long, env = "QUEUE_ADMIT_BATCH", default_value_t = 100, value_parser = clap::value_parser!(u32).range(1..=1_000_000))]
    pub queue_admit_batch: u32,
    /// Seconds an ACTIVE token stays valid after activation.
    #[arg(long, env = "QUEUE_ACTIVE_TTL_SECS", default_value_t = 600, value_parser = clap::value_parser!(u64).range(1..=MAX_SECS))]
    pub queue_active_ttl_secs: u64,
    /// Optional cap on ACTIVE tokens at once (admission holds back while it is reached).
    #[arg(long, env = "QUEUE_MAX_ACTIVE", value_parser = clap::value_parser!(u32).range(1..))]
    pub queue_max_active: Option<u32>,
    /// Seconds a reservation holds its seat unpaid.
    #[arg(long, env = "SEAT_HOLD_SECS", default_value_t = 300, value_parser = clap::value_parser!(u64).range(1..=MAX_SECS))]
    pub seat_hold_secs: u64,
    /// `false` runs an API-only instance (no admission, expiry or hold release here).
    #[arg(
        long,
        env = "SCHEDULER_ENABLED",
        default_value_t = true,
        action = ArgAction::Set,
        value_parser = BoolishValueParser::new()
    )]
    pub scheduler_enabled: bool,
    /// How often the scheduler checks, in milliseconds (capped at the admission interval).
    #[arg(long, env = "SCHEDULER_CHECK_MILLIS", default_value_t = 1000, value_parser = clap::value_parser!(u64).range(10..=MAX_SECS * 1000))]
    pub scheduler_check_millis: u64,
    /// How stale a WAITING token's poll may be, in milliseconds: polls are answered from
    /// memory with the queue cursor re-read at most this often (0: every poll reads the
    /// database). Authorization, issue and admission are always exact.
    #[arg(long, env = "QUEUE_POLL_CACHE_MILLIS", default_value_t = 250, value_parser = clap::value_parser!(u64).range(0..=60_000))]
    pub queue_poll_cache_millis: u64,
    /// HTTP worker threads (default: one per core).
    #[arg(long, env = "HTTP_WORKERS", value_parser = clap::value_parser!(u16).range(1..=256))]
    pub http_workers: Option<u16>,
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

    /// The business policy these settings describe.
    #[must_use]
    pub fn policy(&self) -> Policy {
        Policy {
            admission: AdmissionPolicy {
                batch: self.queue_admit_batch,
                interval: secs(self.queue_admit_interval_secs),
                active_ttl: secs(self.queue_active_ttl_secs),
                max_active: self.queue_max_active,
            },
            hold: secs(self.seat_hold_secs),
        }
    }

    /// The poll cache's settings, `None` when `QUEUE_POLL_CACHE_MILLIS` is 0.
    #[must_use]
    pub fn queue_cache_settings(&self) -> Option<QueueCacheSettings> {
        let millis = i64::try_from(self.queue_poll_cache_millis).ok().filter(|m| *m > 0)?;
        Some(QueueCacheSettings { cursor_ttl: time::Duration::milliseconds(millis), ..QueueCacheSettings::default() })
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
    // The parsers cap every value at MAX_SECS, far below i64::MAX.
    time::Duration::seconds(i64::try_from(s).unwrap_or(i64::MAX))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_cli_is_well_formed() {
        use clap::CommandFactory;
        Cli::command().debug_assert();
    }

    #[test]
    fn policy_and_scheduler_follow_the_settings() {
        let s = Settings::from_flags([
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
        ])
        .unwrap();
        let p = s.policy();
        assert_eq!(p.admission.batch, 7);
        assert_eq!(p.admission.interval, time::Duration::seconds(2));
        assert_eq!(p.admission.active_ttl, time::Duration::seconds(30));
        assert_eq!(p.admission.max_active, Some(50));
        assert_eq!(p.hold, time::Duration::seconds(9));
        assert_eq!(s.scheduler_settings().check_every, StdDuration::from_secs(2), "capped at the interval");
    }

    #[test]
    fn out_of_range_values_are_refused() {
        assert!(Settings::from_flags(["--queue-admit-interval-secs", "0"]).is_err());
        assert!(Settings::from_flags(["--queue-admit-batch", "-1"]).is_err());
        assert!(Settings::from_flags(["--store", "mongo"]).is_err());
        assert!(Settings::from_flags(["--scheduler-enabled", "maybe"]).is_err());
    }
}
