//! What the run measures while it runs: one latency histogram per step, the answers by step,
//! status and code, and per-second counters for the timeline.
//!
//! Every buyer task records into one shared [`Stats`]. The locks are held for one histogram
//! record or one map update, far shorter than any request, so they cost the client little; the
//! per-second counters are atomics indexed by the second since the run started.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, OnceLock};
use std::time::{Duration, Instant};

use hdrhistogram::Histogram;
use serde::Serialize;

/// The steps a buyer takes, each with its own latency histogram.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Step {
    /// `POST /queue/tokens`.
    Join,
    /// `GET /queue/token`.
    Poll,
    /// `GET /concerts/{id}/schedules`.
    Schedules,
    /// `GET /schedules/{id}/seats`.
    Seats,
    /// `POST /reservations`.
    Hold,
    /// `POST /users/{id}/balance/charge`.
    Charge,
    /// `POST /payments`.
    Pay,
}

impl Step {
    /// Every step, in the order a buyer takes them.
    pub const ALL: [Step; 7] =
        [Step::Join, Step::Poll, Step::Schedules, Step::Seats, Step::Hold, Step::Charge, Step::Pay];

    /// The step's name in the report.
    pub fn name(self) -> &'static str {
        match self {
            Step::Join => "join",
            Step::Poll => "poll",
            Step::Schedules => "schedules",
            Step::Seats => "seats",
            Step::Hold => "hold",
            Step::Charge => "charge",
            Step::Pay => "pay",
        }
    }

    fn index(self) -> usize {
        self as usize
    }
}

/// How one answer is judged against the contract's expected answers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// 200/201, 409 `SEAT_UNAVAILABLE`/`HOLD_LIMIT`.
    Expected,
    /// 503 or a transport failure inside a failover window: expected while an instance or a
    /// Redis master is down.
    Failover,
    /// Anything else.
    Unexpected,
}

/// The measurements of one run.
#[derive(Debug)]
pub struct Stats {
    start: Instant,
    latency: Vec<Mutex<Histogram<u64>>>,
    answers: Mutex<BTreeMap<(Step, u16, String), u64>>,
    /// Failover windows, as offsets from the start (set once the opening's time is known).
    windows: OnceLock<Vec<(Duration, Duration)>>,
    sold: Vec<AtomicU64>,
    errors: Vec<AtomicU64>,
    unexpected: AtomicU64,
}

/// One latency summary, in milliseconds.
#[derive(Debug, Clone, Serialize)]
pub struct Summary {
    /// Number of answers measured.
    pub count: u64,
    /// Median.
    pub p50_ms: f64,
    /// 99th percentile.
    pub p99_ms: f64,
    /// Slowest.
    pub max_ms: f64,
}

impl Stats {
    /// Stats for a run of at most `secs` seconds.
    pub fn new(start: Instant, secs: u64) -> anyhow::Result<Self> {
        let mut latency = Vec::new();
        for _ in Step::ALL {
            // 1 µs to 10 min at 3 significant digits.
            latency.push(Mutex::new(Histogram::new_with_bounds(1, 600_000_000, 3)?));
        }
        let slots = usize::try_from(secs + 120).unwrap_or(usize::MAX / 2);
        Ok(Stats {
            start,
            latency,
            answers: Mutex::new(BTreeMap::new()),
            windows: OnceLock::new(),
            sold: (0..slots).map(|_| AtomicU64::new(0)).collect(),
            errors: (0..slots).map(|_| AtomicU64::new(0)).collect(),
            unexpected: AtomicU64::new(0),
        })
    }

    /// When the run started.
    pub fn start(&self) -> Instant {
        self.start
    }

    fn slot(&self, at: Instant) -> usize {
        let secs = at.saturating_duration_since(self.start).as_secs();
        usize::try_from(secs).unwrap_or(usize::MAX).min(self.sold.len() - 1)
    }

    /// Sets the failover windows (offsets from the start); only the first call counts.
    pub fn set_failover_windows(&self, windows: Vec<(Duration, Duration)>) {
        let _ = self.windows.set(windows);
    }

    /// Whether `at` falls in a failover window.
    pub fn in_failover(&self, at: Instant) -> bool {
        let off = at.saturating_duration_since(self.start);
        self.windows.get().is_some_and(|w| w.iter().any(|(from, to)| off >= *from && off <= *to))
    }

    /// Records one answer (`status` 0 for a transport failure, `code` its problem code or
    /// `""`) that took `took`, and judges it.
    pub fn answer(&self, step: Step, status: u16, code: &str, took: Duration) -> Verdict {
        let micros = u64::try_from(took.as_micros()).unwrap_or(u64::MAX).clamp(1, 600_000_000);
        if let Some(h) = self.latency.get(step.index()) {
            if let Ok(mut h) = h.lock() {
                let _ = h.record(micros);
            }
        }
        if let Ok(mut a) = self.answers.lock() {
            *a.entry((step, status, code.to_owned())).or_insert(0) += 1;
        }
        let now = Instant::now();
        let verdict = match (status, code) {
            (200 | 201, _) | (409, "SEAT_UNAVAILABLE" | "HOLD_LIMIT") => Verdict::Expected,
            (0 | 503, _) if self.in_failover(now) => Verdict::Failover,
            _ => Verdict::Unexpected,
        };
        if verdict != Verdict::Expected {
            self.errors[self.slot(now)].fetch_add(1, Ordering::Relaxed);
        }
        if verdict == Verdict::Unexpected {
            self.unexpected.fetch_add(1, Ordering::Relaxed);
        }
        verdict
    }

    /// Records a sale at `at`.
    pub fn sold(&self, at: Instant) {
        self.sold[self.slot(at)].fetch_add(1, Ordering::Relaxed);
    }

    /// Unexpected answers so far.
    pub fn unexpected(&self) -> u64 {
        self.unexpected.load(Ordering::Relaxed)
    }

    /// Latency of each step that was taken at least once.
    pub fn summaries(&self) -> BTreeMap<&'static str, Summary> {
        let mut out = BTreeMap::new();
        for step in Step::ALL {
            let Some(Ok(h)) = self.latency.get(step.index()).map(Mutex::lock) else { continue };
            if h.is_empty() {
                continue;
            }
            let ms = |v: u64| v as f64 / 1000.0;
            out.insert(
                step.name(),
                Summary {
                    count: h.len(),
                    p50_ms: ms(h.value_at_quantile(0.5)),
                    p99_ms: ms(h.value_at_quantile(0.99)),
                    max_ms: ms(h.max()),
                },
            );
        }
        out
    }

    /// The answers, as `(step, status, code, count)`, in step order.
    pub fn answers(&self) -> Vec<(Step, u16, String, u64)> {
        self.answers
            .lock()
            .map(|a| a.iter().map(|((s, st, c), n)| (*s, *st, c.clone(), *n)).collect())
            .unwrap_or_default()
    }

    /// Sales per second, from the start, for `secs` seconds.
    pub fn sold_per_sec(&self, secs: usize) -> Vec<u64> {
        self.sold.iter().take(secs).map(|c| c.load(Ordering::Relaxed)).collect()
    }

    /// Non-expected answers per second, from the start, for `secs` seconds.
    pub fn errors_per_sec(&self, secs: usize) -> Vec<u64> {
        self.errors.iter().take(secs).map(|c| c.load(Ordering::Relaxed)).collect()
    }
}
