//! The scheduler: the seed's two background flows (admit waiting tokens, expire active ones;
//! close lapsed holds) as one tokio task per instance.
//!
//! The task wakes every `check_every` (1 s by default, never more than the admission interval)
//! and runs [`Ticketing::tick`] on the blocking pool, because ports are synchronous. It does not
//! decide *when* an admission is due: the queue store does, inside its atomic section, from the
//! time of the last admission that any instance recorded. That is what keeps several instances,
//! started together or with offset timers, at no more than N admissions per interval, and it is
//! why the task checks often rather than sleeping a whole interval (a check that is not due costs
//! one short transaction; an instance that slept M would drift against the recorded tick and
//! could wait up to 2M). When the store says when the next admission is due, the task sleeps
//! exactly until then instead of a whole check period.
//!
//! Reads never wait for this task: a lapsed token or hold already reads as lapsed (see the
//! domain's `status_at` rules); the task only makes storage catch up, so a slow or failed tick
//! costs freshness of counts, never correctness.
//!
//! # Layout
//! - [`SchedulerSettings`]: how often to check.
//! - [`spawn`]: starts the loop; it stops between ticks when the shutdown channel flips.
//! - [`run_tick`]: one pass, logged; used by the loop and by tests.

use std::time::{Duration, Instant};

use domain::queue::AdmissionOutcome;
use domain::service::{TickReport, Ticketing};
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tracing::{debug, info, warn};

/// How the scheduler runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SchedulerSettings {
    /// How often the task wakes to admit, expire and release.
    pub check_every: Duration,
}

impl SchedulerSettings {
    /// Checks every `check_every`, but at least once per admission interval `interval`, and never
    /// more often than every 10 ms.
    #[must_use]
    pub fn new(check_every: Duration, interval: Duration) -> Self {
        Self { check_every: check_every.min(interval).max(Duration::from_millis(10)) }
    }
}

/// Runs one scheduler pass on the blocking pool and logs what it did: each pass at debug level,
/// a summary at info level when something changed. Returns the report, or the store error
/// (already logged by the caller's streak logic, not here).
pub async fn run_tick(ticketing: &Ticketing) -> Result<TickReport, String> {
    let ticketing = ticketing.clone();
    let started = Instant::now();
    let outcome = tokio::task::spawn_blocking(move || ticketing.tick()).await;
    let elapsed = started.elapsed();
    match outcome {
        Ok(Ok(report)) => {
            let admitted = match report.admission {
                AdmissionOutcome::Admitted(n) => n,
                AdmissionOutcome::NotDue { .. } | AdmissionOutcome::Busy => 0,
            };
            debug!(
                admitted,
                admission = ?report.admission,
                tokens_expired = report.tokens_expired,
                holds_released = report.holds_released,
                duration_ms = elapsed.as_secs_f64() * 1e3,
                "scheduler tick"
            );
            if admitted > 0 || report.tokens_expired > 0 || report.holds_released > 0 {
                info!(
                    admitted,
                    tokens_expired = report.tokens_expired,
                    holds_released = report.holds_released,
                    duration_ms = elapsed.as_secs_f64() * 1e3,
                    "scheduler tick changed state"
                );
            }
            Ok(report)
        }
        Ok(Err(e)) => Err(e.to_string()),
        Err(join) => Err(format!("scheduler tick panicked or was cancelled: {join}")),
    }
}

/// Starts the scheduler loop. It runs a pass at once, then every `settings.check_every`, and
/// returns between passes once `shutdown` turns `true` (or its sender is dropped).
///
/// A failed pass (database down) is logged once when the failure starts, at debug level while
/// it lasts, and at info level when passes succeed again; the next pass simply carries on, and
/// nothing is skipped for good because every pass works from the stored state.
pub fn spawn(ticketing: Ticketing, settings: SchedulerSettings, mut shutdown: watch::Receiver<bool>) -> JoinHandle<()> {
    tokio::spawn(async move {
        let mut next_wake = tokio::time::Instant::now();
        let mut failing_since: Option<Instant> = None;
        info!(check_every_ms = settings.check_every.as_millis(), "scheduler started");
        loop {
            if *shutdown.borrow() {
                break;
            }
            tokio::select! {
                () = tokio::time::sleep_until(next_wake) => {}
                changed = shutdown.changed() => {
                    if changed.is_err() || *shutdown.borrow() {
                        break;
                    }
                    continue;
                }
            }
            let outcome = run_tick(&ticketing).await;
            next_wake = tokio::time::Instant::now() + next_wait(&ticketing, &settings, outcome.as_ref().ok());
            match outcome {
                Ok(_) => {
                    if let Some(since) = failing_since.take() {
                        info!(failed_for_ms = since.elapsed().as_millis(), "scheduler recovered");
                    }
                }
                Err(cause) if failing_since.is_none() => {
                    warn!(%cause, "scheduler tick failed; retrying on the next tick");
                    failing_since = Some(Instant::now());
                }
                Err(cause) => debug!(%cause, "scheduler tick still failing"),
            }
        }
        info!("scheduler stopped");
    })
}

/// How long to sleep before the next pass: the regular check period, or less when the store said
/// the next admission falls due sooner. Waking at the due instant keeps admissions M apart
/// rather than M plus up to one check period (a check that lands a hair before the due instant
/// would otherwise wait a whole period).
fn next_wait(ticketing: &Ticketing, settings: &SchedulerSettings, report: Option<&TickReport>) -> Duration {
    let until_due = match report.map(|r| r.admission) {
        Some(AdmissionOutcome::NotDue { next_at }) => next_at - ticketing.clock().now(),
        Some(AdmissionOutcome::Admitted(n)) if n > 0 => ticketing.policy().admission.interval,
        _ => return settings.check_every,
    };
    // A millisecond of slack so the store's clock reading is past `next_at` when we get there.
    Duration::try_from(until_due + time::Duration::milliseconds(1))
        .map_or(settings.check_every, |d| d.min(settings.check_every))
}
