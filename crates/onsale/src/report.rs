//! The report: what the run measured and each target of the issue as met or missed, printed
//! and written as JSON (the test reads the JSON).

use std::collections::BTreeMap;
use std::fmt::Write as _;

use serde::Serialize;

use crate::check::OrderCheck;
use crate::stats::Summary;

/// One target of the issue.
#[derive(Debug, Clone, Serialize)]
pub struct Target {
    /// What it asks.
    pub name: String,
    /// Whether the run met it.
    pub met: bool,
    /// What was measured.
    pub detail: String,
}

/// One answer count.
#[derive(Debug, Clone, Serialize)]
pub struct AnswerCount {
    /// The step.
    pub step: String,
    /// HTTP status (0: transport failure or timeout).
    pub status: u16,
    /// Problem code, `""` for none.
    pub code: String,
    /// How many.
    pub count: u64,
}

/// A chaos command as it ran.
#[derive(Debug, Clone, Serialize)]
pub struct ChaosRun {
    /// Seconds after the opening it was due.
    pub at_secs_after_opening: u64,
    /// The command.
    pub command: String,
    /// Its exit status (`None`: it could not be started or was killed).
    pub exit: Option<i32>,
}

/// Money and counts: seats sold = payments = money taken.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Money {
    /// Seats on sale.
    pub seats: u64,
    /// Payments answered 201 to the buyers.
    pub payments: u64,
    /// Distinct seats among them.
    pub distinct_seats: u64,
    /// Sum of the payments' amounts.
    pub paid_amount: i64,
    /// `sold` over the schedules (`GET /admin/concerts/{id}/sales`).
    pub sold: u64,
    /// `revenue` over the schedules.
    pub revenue: i64,
    /// `concert check-invariants`: `None` when not run (no database given).
    pub invariants_ok: Option<bool>,
    /// Its output.
    pub invariants_output: String,
}

/// The whole report.
#[derive(Debug, Clone, Serialize)]
pub struct Report {
    /// The service played against.
    pub base_url: String,
    /// The room.
    pub room: String,
    /// Buyers, of whom joined late and abandoned.
    pub buyers: u64,
    /// Joined after the opening.
    pub late_buyers: u64,
    /// Stopped polling.
    pub abandoning_buyers: u64,
    /// Seconds the run took.
    pub run_secs: f64,
    /// Target and achieved joins per second in the pre-queue.
    pub join_rate_target: u64,
    /// Joins per second achieved over the pre-queue's joins.
    pub join_rate_held: f64,
    /// Per step latency.
    pub steps: BTreeMap<&'static str, Summary>,
    /// Answers by step, status and code.
    pub answers: Vec<AnswerCount>,
    /// Answers other than the expected ones.
    pub unexpected_answers: u64,
    /// Seconds from the opening to the last seat sold (`None`: not sold out).
    pub sold_out_secs_after_opening: Option<f64>,
    /// Buyers who bought, found no seat left, gave up on an answer, were still waiting at the end.
    pub bought: u64,
    /// See `bought`.
    pub found_sold_out: u64,
    /// See `bought`.
    pub failed: u64,
    /// See `bought`.
    pub still_waiting: u64,
    /// The first few failures, in words.
    pub failures: Vec<String>,
    /// Staying buyers whose place was lost.
    pub lost_places: u64,
    /// The first few, in words.
    pub lost_examples: Vec<String>,
    /// Abandoning buyers whose place was skipped (`ABANDONED`), and the room's own count.
    pub abandoned_skipped: u64,
    /// The room's `abandoned`.
    pub room_abandoned: u64,
    /// The order check.
    pub order: OrderCheck,
    /// Money and counts.
    pub money: Money,
    /// The chaos commands.
    pub chaos: Vec<ChaosRun>,
    /// The targets.
    pub targets: Vec<Target>,
    /// The chart's series.
    pub timeline: crate::chart::Timeline,
}

impl Report {
    /// Every target met.
    pub fn all_met(&self) -> bool {
        self.targets.iter().all(|t| t.met)
    }

    /// The report as text.
    pub fn text(&self) -> String {
        let mut s = String::new();
        let _ = writeln!(s, "on-sale against {} (room {}), {:.0} s", self.base_url, self.room, self.run_secs);
        let _ = writeln!(
            s,
            "buyers {} ({} joined after the opening, {} abandoned); joins/s held {:.0} of {} target",
            self.buyers, self.late_buyers, self.abandoning_buyers, self.join_rate_held, self.join_rate_target
        );
        let _ = writeln!(s, "\n{:<10} {:>9} {:>10} {:>10} {:>10}", "step", "count", "p50 ms", "p99 ms", "max ms");
        for (name, l) in &self.steps {
            let _ = writeln!(s, "{:<10} {:>9} {:>10.1} {:>10.1} {:>10.1}", name, l.count, l.p50_ms, l.p99_ms, l.max_ms);
        }
        let _ = writeln!(s, "\nanswers:");
        for a in &self.answers {
            let _ = writeln!(s, "  {:<10} {:>3} {:<24} {:>9}", a.step, a.status, a.code, a.count);
        }
        let _ = writeln!(
            s,
            "\nbought {}, found it sold out {}, failed {}, still waiting at the end {}",
            self.bought, self.found_sold_out, self.failed, self.still_waiting
        );
        for f in &self.failures {
            let _ = writeln!(s, "  failure: {f}");
        }
        let o = &self.order;
        let _ = writeln!(
            s,
            "draw: {} pre-queue tokens, {} drawn; {} entrants and {} later joiners admitted over {} ticks; {} inversions, {} among later joiners",
            o.prequeue_tokens, o.drawn_entrants, o.entrants_admitted, o.late_admitted, o.ticks, o.inversions, o.late_inversions
        );
        for e in &o.examples {
            let _ = writeln!(s, "  order: {e}");
        }
        let m = &self.money;
        let _ = writeln!(
            s,
            "seats {}: sold {} (store), payments {} ({} distinct seats), paid {} won, revenue {} won (store)",
            m.seats, m.sold, m.payments, m.distinct_seats, m.paid_amount, m.revenue
        );
        let _ = writeln!(
            s,
            "abandoned places skipped {} (room counts {}); lost places {}",
            self.abandoned_skipped, self.room_abandoned, self.lost_places
        );
        for e in &self.lost_examples {
            let _ = writeln!(s, "  lost: {e}");
        }
        for c in &self.chaos {
            let _ = writeln!(s, "chaos at +{} s: {} -> {:?}", c.at_secs_after_opening, c.command, c.exit);
        }
        let _ = writeln!(s, "\ntargets:");
        for t in &self.targets {
            let _ = writeln!(s, "  {:<6} {}: {}", if t.met { "met" } else { "MISSED" }, t.name, t.detail);
        }
        s
    }
}
