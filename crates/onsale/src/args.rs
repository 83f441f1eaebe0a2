//! The generator's flags. Every size has a default for the real run (200,000 buyers) and the
//! sizes derived from the buyers (seats, admission batch, pre-queue length) follow `--buyers`,
//! so `--buyers 2000` alone makes a small run of the same shape.

use std::path::PathBuf;

use clap::Parser;

/// `onsale`: plays a whole on-sale against a running service and reports the targets.
#[derive(Debug, Clone, Parser)]
#[command(version)]
pub struct Args {
    /// The service (HAProxy of the local cluster, or one instance).
    #[arg(long, env = "ONSALE_BASE_URL", default_value = "http://127.0.0.1:8080")]
    pub base_url: String,
    /// The operator secret (`ADMIN_TOKEN` of the service).
    #[arg(long, env = "ADMIN_TOKEN", hide_env_values = true)]
    pub admin_token: String,
    /// How many buyers.
    #[arg(long, default_value_t = 200_000)]
    pub buyers: u64,
    /// Share of the buyers who join after the opening (the others join in the pre-queue).
    #[arg(long, default_value_t = 0.1)]
    pub late_share: f64,
    /// Share of the buyers who stop polling (abandon) at a random moment while they wait.
    #[arg(long, default_value_t = 0.05)]
    pub abandon_share: f64,
    /// Joins per second, in the pre-queue and after the opening.
    #[arg(long, default_value_t = 5000)]
    pub join_rate: u64,
    /// Seats on sale [default: buyers / 8, between 1 and 50,000].
    #[arg(long)]
    pub seats: Option<u64>,
    /// Seats per schedule (dates of the concert), 1..=5000.
    #[arg(long, default_value_t = 1000)]
    pub seats_per_schedule: u64,
    /// Seconds the sale should take until sold out; sets the admission batch
    /// (about seats / sale-secs a second) unless `--admit-batch` is given.
    #[arg(long, default_value_t = 90)]
    pub sale_secs: u64,
    /// The room's `admitBatch` [default: from `--sale-secs`].
    #[arg(long)]
    pub admit_batch: Option<u64>,
    /// The room's `admitIntervalSecs`.
    #[arg(long, default_value_t = 1)]
    pub admit_interval_secs: u64,
    /// `admitBatch` the operator switches to once sold out, to let the rest of the line learn it
    /// [default: max(admit batch, buyers / 30)].
    #[arg(long)]
    pub drain_batch: Option<u64>,
    /// The room's `abandonAfterSecs` (0 = keep every place, else 30..=86400). With `--chaos`,
    /// make it longer than the failover window plus 25 s: a staying buyer whose polls all fail
    /// for longer than it is skipped like one who left, and counts as a lost place.
    #[arg(long, default_value_t = 30)]
    pub abandon_after_secs: u64,
    /// The room's `activeTtlSecs`.
    #[arg(long, default_value_t = 600)]
    pub active_ttl_secs: u64,
    /// Seconds after which the run stops whatever happened (the report then says what was not
    /// reached).
    #[arg(long, default_value_t = 900)]
    pub max_secs: u64,
    /// Most requests in flight at once.
    #[arg(long, default_value_t = 1024)]
    pub max_inflight: usize,
    /// Seconds one request may take before it counts as a transport failure.
    #[arg(long, default_value_t = 10)]
    pub request_timeout_secs: u64,
    /// Seed of the buyers' choices (who abandons, which seats they want).
    #[arg(long, default_value_t = 1)]
    pub seed: u64,
    /// A command run with `sh -c` mid-rush, as `SECS:COMMAND`, SECS after the opening; may be
    /// repeated (e.g. `--chaos "20:deploy/cluster.sh kill-instance 2"`).
    #[arg(long = "chaos", value_parser = parse_chaos)]
    pub chaos: Vec<(u64, String)>,
    /// Seconds after each chaos command during which 503s and transport failures are expected.
    #[arg(long, default_value_t = 20)]
    pub failover_window_secs: u64,
    /// Where to write the JSON report.
    #[arg(long, default_value = "onsale-report.json")]
    pub json: PathBuf,
    /// Where to draw the timeline chart (PNG).
    #[arg(long, default_value = "onsale.png")]
    pub png: PathBuf,
    /// The service's database: when given, `concert check-invariants` runs against it at the end.
    #[arg(long, env = "ONSALE_DATABASE_URL")]
    pub database_url: Option<String>,
    /// The `concert` binary for `check-invariants` [default: `concert` beside this binary].
    #[arg(long)]
    pub concert_bin: Option<PathBuf>,
    /// The room's id [default: `onsale-<unix seconds>`].
    #[arg(long)]
    pub room_id: Option<String>,
}

fn parse_chaos(s: &str) -> Result<(u64, String), String> {
    let (secs, cmd) = s.split_once(':').ok_or("expected SECS:COMMAND")?;
    let secs = secs.trim().parse().map_err(|_| format!("not a number of seconds: {secs}"))?;
    Ok((secs, cmd.to_owned()))
}

impl Args {
    /// Seats on sale.
    pub fn seats(&self) -> u64 {
        self.seats.unwrap_or(self.buyers / 8).clamp(1, 50_000)
    }

    /// The room's admission batch.
    pub fn admit_batch(&self) -> u64 {
        self.admit_batch
            .unwrap_or_else(|| (self.seats() * self.admit_interval_secs).div_ceil(self.sale_secs.max(1)))
            .clamp(1, 100_000)
    }

    /// The batch once sold out.
    pub fn drain_batch(&self) -> u64 {
        self.drain_batch.unwrap_or_else(|| self.admit_batch().max(self.buyers / 30)).clamp(1, 100_000)
    }

    /// Buyers who join in the pre-queue.
    pub fn early_buyers(&self) -> u64 {
        let late = (self.buyers as f64 * self.late_share.clamp(0.0, 1.0)).round() as u64;
        self.buyers.saturating_sub(late)
    }
}
