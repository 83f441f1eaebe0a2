//! The scheduler: the background flows of one instance (admit waiting tokens, expire ACTIVE
//! ones, release lapsed holds, purge expired idempotency records) as one tokio task.
//!
//! The task wakes every `check_every` (`SCHEDULER_CHECK_MILLIS`, never more than the admission
//! interval it started with) and runs [`Ticketing::tick`] on the blocking pool, because ports
//! are synchronous. It does not decide *when* an admission is due, nor how many: the queue
//! store does, inside its atomic section, on its own clock, from the last admission any
//! instance recorded, with the settings an operator last stored (read at every tick, so a
//! change applies at the next check). That keeps several instances, started together, offset,
//! or with clocks that disagree, at no more than N admissions per interval. When the store
//! answers `NotDue { wait }`, the task sleeps `wait` (plus a millisecond, so the store's clock is
//! past the due instant when it gets there) if that is shorter than a check period, so
//! admissions run M apart rather than M plus up to one period. `Paused` is a normal outcome:
//! the task keeps checking, and resumes admitting at the first check after an operator
//! un-pauses.
//!
//! Reads never wait for this task: a lapsed token or hold already reads as lapsed (the domain's
//! `status_at` rules); the task only makes storage catch up, in bounded batches, so a slow or
//! failed tick costs freshness of counts, never correctness.
//!
//! Each pass also checks every other room ([`Ticketing::tick_rooms`]: presence handed to the
//! lines, each room's draw when its opening has come, its admission and its token expiry),
//! after `main`'s, in the same blocking task (the rooms [`domain::service::ROOM_CHECKS_AT_ONCE`]
//! at a time, so a hundred rooms' store round trips and one room's draw of a million fit in a
//! check interval without delaying the others); one room failing stops no other, and the loop
//! wakes for the soonest admission due in any room, so each room's admission runs at most one
//! check after it is due.
//!
//! Each tick is measured with the `metrics` facade: `queue_tokens_admitted_total{room}` and
//! `queue_tokens_abandoned_total{room}` (counters), `scheduler_tick_duration_seconds`
//! (histogram), and `store_errors_total{kind}` (counter, the [`StoreError::kind`] of a failed
//! tick or room).
//!
//! # Layout
//! - [`SchedulerSettings`]: how often to check.
//! - [`spawn`], [`spawn_observed`]: start the loop (the latter also sends every tick's result
//!   to a channel, for tests and probes); it stops between ticks when the shutdown channel
//!   flips.
//! - [`run_tick`]: one pass, logged and measured; used by the loop and by tests.

use std::time::{Duration, Instant};

use domain::metric_names::{QUEUE_TOKENS_ABANDONED_TOTAL, QUEUE_TOKENS_ADMITTED_TOTAL, ROOM_LABEL, STORE_ERRORS_TOTAL};
use domain::ports::StoreError;
use domain::queue::AdmissionOutcome;
use domain::service::{RoomTick, TickReport, Ticketing};
use tokio::sync::{mpsc, watch};
use tokio::task::JoinHandle;
use tracing::{debug, info, warn};

/// How long one scheduler tick took, in seconds.
pub const TICK_DURATION: &str = "scheduler_tick_duration_seconds";

/// How the scheduler runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SchedulerSettings {
    /// How often the task wakes to admit, expire, release and purge.
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

/// Why a tick failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TickError {
    /// A store failed (after every part of the tick was tried).
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The blocking task panicked or was cancelled.
    #[error("scheduler tick panicked or was cancelled: {0}")]
    Aborted(String),
}

/// What one tick gave: its report, or why it failed.
pub type TickResult = Result<TickReport, TickError>;

/// Runs one scheduler pass on the blocking pool, logs what it did (each pass at debug level, a
/// summary at info level when something changed) and records its metrics. Failures are logged
/// by the loop, which knows whether they are new.
///
/// # Errors
/// [`TickError::Store`] with the first store error of the pass; [`TickError::Aborted`] when
/// the blocking task did not finish.
pub async fn run_tick(ticketing: &Ticketing) -> TickResult {
    run_pass(ticketing).await.0
}

/// [`run_tick`], and the soonest time an admission of a room other than `main` falls due.
async fn run_pass(ticketing: &Ticketing) -> (TickResult, Option<time::Duration>) {
    let ticketing = ticketing.clone();
    let started = Instant::now();
    let outcome = tokio::task::spawn_blocking(move || {
        let main = ticketing.tick();
        let rooms = ticketing.tick_rooms();
        (main, rooms)
    })
    .await;
    let elapsed = started.elapsed();
    let (outcome, rooms_due) = match outcome {
        Ok((main, rooms)) => {
            // One failure per pass: a store that is down fails main's tick and the rooms'
            // read alike, and is counted once.
            let count_read_error = main.is_ok();
            (Ok(main), record_rooms(rooms, count_read_error))
        }
        Err(join) => (Err(join), None),
    };
    (record_main(outcome, elapsed), rooms_due)
}

/// Records and logs what each room's check did; returns the soonest admission due.
fn record_rooms(
    rooms: Result<Vec<Result<RoomTick, StoreError>>, StoreError>,
    count_read_error: bool,
) -> Option<time::Duration> {
    let ticks = match rooms {
        Ok(ticks) => ticks,
        Err(e) => {
            if count_read_error {
                metrics::counter!(STORE_ERRORS_TOTAL, "kind" => e.kind()).increment(1);
            }
            debug!(error = %e, "rooms could not be read");
            return None;
        }
    };
    let mut soonest: Option<time::Duration> = None;
    for tick in ticks {
        match tick {
            Ok(tick) => {
                let room = tick.room.to_string();
                let (admitted, abandoned) = (tick.admission.admitted(), tick.admission.abandoned());
                metrics::counter!(QUEUE_TOKENS_ADMITTED_TOTAL, ROOM_LABEL => room.clone()).increment(admitted);
                metrics::counter!(QUEUE_TOKENS_ABANDONED_TOTAL, ROOM_LABEL => room.clone()).increment(abandoned);
                if let AdmissionOutcome::NotDue { wait } = tick.admission {
                    soonest = Some(soonest.map_or(wait, |s| s.min(wait)));
                }
                if admitted > 0 || abandoned > 0 || tick.tokens_expired > 0 || tick.drew.is_some() {
                    info!(
                        room,
                        admitted,
                        abandoned,
                        tokens_expired = tick.tokens_expired,
                        drew = tick.drew.map(|d| d.entrants),
                        "room check changed state"
                    );
                }
            }
            Err(e) => {
                metrics::counter!(STORE_ERRORS_TOTAL, "kind" => e.kind()).increment(1);
                debug!(error = %e, "a room's check failed; retrying at the next check");
            }
        }
    }
    soonest
}

fn record_main(
    outcome: Result<Result<TickReport, StoreError>, tokio::task::JoinError>,
    elapsed: Duration,
) -> TickResult {
    metrics::histogram!(TICK_DURATION).record(elapsed.as_secs_f64());
    let report = match outcome {
        Ok(Ok(report)) => report,
        Ok(Err(e)) => {
            metrics::counter!(STORE_ERRORS_TOTAL, "kind" => e.kind()).increment(1);
            return Err(TickError::Store(e));
        }
        Err(join) => return Err(TickError::Aborted(join.to_string())),
    };
    let admitted = report.admission.admitted();
    metrics::counter!(QUEUE_TOKENS_ADMITTED_TOTAL, ROOM_LABEL => "main").increment(admitted);
    debug!(
        admitted,
        admission = ?report.admission,
        tokens_expired = report.tokens_expired,
        holds_released = report.holds_released,
        keys_purged = report.keys_purged,
        duration_ms = elapsed.as_secs_f64() * 1e3,
        "scheduler tick"
    );
    if admitted > 0 || report.tokens_expired > 0 || report.holds_released > 0 || report.keys_purged > 0 {
        info!(
            admitted,
            tokens_expired = report.tokens_expired,
            holds_released = report.holds_released,
            keys_purged = report.keys_purged,
            duration_ms = elapsed.as_secs_f64() * 1e3,
            "scheduler tick changed state"
        );
    }
    Ok(report)
}

/// Starts the scheduler loop. It runs a pass at once, then one per `settings.check_every` (or
/// sooner when the next admission falls due), and returns between passes once `shutdown` turns
/// `true` or its sender is dropped.
///
/// A failed pass (store down) is logged once when the failure starts, at debug level while it
/// lasts, and at info level when passes succeed again; the next pass simply carries on, and
/// nothing is skipped for good because every pass works from the stored state.
pub fn spawn(ticketing: Ticketing, settings: SchedulerSettings, shutdown: watch::Receiver<bool>) -> JoinHandle<()> {
    tokio::spawn(run(ticketing, settings, shutdown, None))
}

/// [`spawn`], also sending each pass's result to `reports` as soon as the pass is over (a
/// closed receiver is ignored). Tests wait on it instead of sleeping.
pub fn spawn_observed(
    ticketing: Ticketing,
    settings: SchedulerSettings,
    shutdown: watch::Receiver<bool>,
    reports: mpsc::UnboundedSender<TickResult>,
) -> JoinHandle<()> {
    tokio::spawn(run(ticketing, settings, shutdown, Some(reports)))
}

async fn run(
    ticketing: Ticketing,
    settings: SchedulerSettings,
    mut shutdown: watch::Receiver<bool>,
    reports: Option<mpsc::UnboundedSender<TickResult>>,
) {
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
        let (outcome, rooms_due) = run_pass(&ticketing).await;
        let wait = next_wait(&settings, outcome.as_ref().ok());
        let rooms_wait = rooms_due.map_or(settings.check_every, |due| due_in(&settings, due));
        next_wake = tokio::time::Instant::now() + wait.min(rooms_wait);
        match &outcome {
            Ok(_) => {
                if let Some(since) = failing_since.take() {
                    info!(failed_for_ms = since.elapsed().as_millis(), "scheduler recovered");
                }
            }
            Err(cause) if failing_since.is_none() => {
                warn!(%cause, "scheduler tick failed; retrying at the next check");
                failing_since = Some(Instant::now());
            }
            Err(cause) => debug!(%cause, "scheduler tick still failing"),
        }
        if let Some(reports) = &reports {
            let _ = reports.send(outcome);
        }
    }
    info!("scheduler stopped");
}

/// How long to sleep before the next pass: the check period, or less when the store said the
/// next admission falls due sooner. The extra millisecond makes the store's clock read past
/// the due instant when the pass runs (a pass that lands a hair early would otherwise wait a
/// whole period more).
fn next_wait(settings: &SchedulerSettings, report: Option<&TickReport>) -> Duration {
    match report.map(|r| r.admission) {
        Some(AdmissionOutcome::NotDue { wait }) => due_in(settings, wait),
        _ => settings.check_every,
    }
}

/// The sleep until an admission due in `wait`, capped at the check period.
fn due_in(settings: &SchedulerSettings, wait: time::Duration) -> Duration {
    Duration::try_from(wait + time::Duration::milliseconds(1))
        .unwrap_or(Duration::from_millis(1))
        .min(settings.check_every)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn report(admission: AdmissionOutcome) -> TickReport {
        TickReport { admission, tokens_expired: 0, holds_released: 0, keys_purged: 0 }
    }

    #[test]
    fn the_check_period_is_capped_by_the_interval_and_floored_at_ten_ms() {
        let s = SchedulerSettings::new(Duration::from_secs(5), Duration::from_secs(1));
        assert_eq!(s.check_every, Duration::from_secs(1));
        let s = SchedulerSettings::new(Duration::from_millis(1), Duration::from_secs(60));
        assert_eq!(s.check_every, Duration::from_millis(10));
    }

    #[test]
    fn a_pass_sleeps_until_the_due_admission_when_sooner_than_a_check_period() {
        let s = SchedulerSettings { check_every: Duration::from_secs(5) };
        let not_due = |ms| Some(report(AdmissionOutcome::NotDue { wait: time::Duration::milliseconds(ms) }));
        assert_eq!(next_wait(&s, not_due(1_500).as_ref()), Duration::from_millis(1_501));
        assert_eq!(next_wait(&s, not_due(4_999).as_ref()), Duration::from_secs(5), "capped at the period");
        assert_eq!(next_wait(&s, not_due(60_000).as_ref()), Duration::from_secs(5));
        assert_eq!(next_wait(&s, not_due(-3).as_ref()), Duration::from_millis(1), "already due");
        for other in [AdmissionOutcome::Admitted(3), AdmissionOutcome::Busy, AdmissionOutcome::Paused] {
            assert_eq!(next_wait(&s, Some(&report(other))), Duration::from_secs(5));
        }
        assert_eq!(next_wait(&s, None), Duration::from_secs(5), "a failed pass retries a period later");
    }
}
