//! `onsale`: a whole on-sale played against the service, and the targets checked.
//!
//! # The play
//! 1. Set-up through the operator API: a concert whose dates hold `--seats` seats (prices by
//!    tier, the lowest numbers dearest), and a room for it with a pre-queue open now, an
//!    opening after the pre-queue's joins (`drawAtOpen`), `abandonAfterSecs`, and an admission
//!    batch that makes the sale last about `--sale-secs`.
//! 2. The pre-queue: the early buyers join at `--join-rate`, each a tokio task ([`buyer`]).
//!    Joins stop two seconds before the opening, so every early token is issued before it.
//! 3. The opening: a monitor reads the room every second (waiting, active, the draw) and the
//!    sales; once the draw is seen, the later buyers join at the same rate (so none of them can
//!    be an entrant of the draw). Buyers poll, are admitted, buy; a share abandons.
//! 4. `--chaos` commands run with `sh -c` at their times after the opening; 503s and transport
//!    failures are expected for `--failover-window-secs` after each.
//! 5. Once sold out the operator raises the batch (`--drain-batch`) so that the rest of the line
//!    is admitted, learns it is sold out and leaves: the admission order is then checked over the
//!    whole line, not only over the lucky ones.
//! 6. The run ends when every staying buyer is done (or at `--max-secs`); the abandoning ones
//!    then look at their tokens once, so the checks know what became of every place.
//!
//! # The checks
//! See [`check`] for the drawn order and lost places; money is counted three ways (the buyers'
//! 201s, the store's sales, `concert check-invariants` when a database is given).

pub mod api;
pub mod args;
pub mod buyer;
pub mod chart;
pub mod check;
pub mod report;
pub mod stats;

use std::collections::HashSet;
use std::path::Path;
use std::sync::atomic::AtomicU64;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::Context as _;
use reqwest::Method;
use serde_json::{json, Value};
use time::format_description::well_known::Rfc3339;
use time::OffsetDateTime;
use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::api::Api;
use crate::args::Args;
use crate::buyer::{Ctx, Record};
use crate::chart::Timeline;
use crate::check::Draw;
use crate::report::{AnswerCount, ChaosRun, Money, Report, Target};
use crate::stats::Stats;

/// Seconds between the room's creation and the first pre-queue join, and between the last
/// pre-queue join and the opening.
const MARGIN_SECS: u64 = 2;

/// One sample of the monitor.
#[derive(Debug, Clone, Copy, Default)]
struct Sample {
    at: Duration,
    waiting: u64,
    active: u64,
    sold: u64,
}

fn u64_of(v: &Value, field: &str) -> u64 {
    v.get(field).and_then(Value::as_u64).unwrap_or(0)
}

fn rfc3339(t: OffsetDateTime) -> anyhow::Result<String> {
    Ok(t.format(&Rfc3339)?)
}

/// A seat's price by its number: the first tenth dearest, then the next three tenths.
fn price_of(number: u64, per_schedule: u64) -> u64 {
    if number * 10 <= per_schedule {
        150_000
    } else if number * 10 <= per_schedule * 4 {
        110_000
    } else {
        80_000
    }
}

/// Creates the concert (its dates holding `seats` seats) and returns its id and total seats.
async fn create_concert(api: &Api, args: &Args, now: OffsetDateTime) -> anyhow::Result<(String, u64)> {
    let per = args.seats_per_schedule.clamp(1, 5000);
    let total = args.seats();
    let mut schedules = Vec::new();
    let mut left = total;
    let mut day = 0i64;
    while left > 0 {
        let n = left.min(per);
        left -= n;
        day += 1;
        let seats: Vec<Value> = (1..=n).map(|k| json!({"number": k, "price": price_of(k, per)})).collect();
        schedules.push(json!({"startsAt": rfc3339(now + time::Duration::days(30 + day))?, "seats": seats}));
    }
    let mut schedules = schedules.into_iter();
    let first: Vec<Value> = schedules.by_ref().take(1).collect();
    let concert = api
        .admin(Method::POST, "/admin/concerts", Some(json!({"title": "The on-sale", "schedules": first})))
        .await
        .context("creating the concert")?;
    let id = concert.get("id").and_then(Value::as_str).context("no concert id")?.to_owned();
    for s in schedules {
        api.admin(Method::POST, &format!("/admin/concerts/{id}/schedules"), Some(s)).await.context("adding a date")?;
    }
    Ok((id, total))
}

/// Runs the command of a chaos hook (on the blocking pool: it may take seconds).
async fn chaos(cmd: String) -> Option<i32> {
    tokio::task::spawn_blocking(move || std::process::Command::new("sh").arg("-c").arg(&cmd).status())
        .await
        .ok()
        .and_then(Result::ok)
        .and_then(|s| s.code())
}

/// Spawns `count` buyers from index `from` at `rate` a second until `stop` (if any); returns the
/// index after the last one spawned.
#[allow(clippy::too_many_arguments, reason = "the spawner's inputs, named at its two calls")]
async fn spawn_buyers(
    ctx: &Arc<Ctx>,
    args: &Args,
    from: u64,
    count: u64,
    late: bool,
    stop: Option<Instant>,
    stayers: &mut Vec<JoinHandle<Record>>,
    leavers: &mut Vec<JoinHandle<Record>>,
) -> u64 {
    let began = Instant::now();
    let rate = args.join_rate.max(1) as f64;
    let mut next = from;
    let mut tick = tokio::time::interval(Duration::from_millis(10));
    while next < from + count {
        tick.tick().await;
        if stop.is_some_and(|s| Instant::now() >= s) {
            break;
        }
        let due = from + ((began.elapsed().as_secs_f64() * rate) as u64).min(count);
        while next < due {
            let abandoner = buyer::abandons(args.seed, next, args.abandon_share);
            let h = tokio::spawn(buyer::run(ctx.clone(), next, late, abandoner));
            if abandoner {
                leavers.push(h);
            } else {
                stayers.push(h);
            }
            next += 1;
        }
    }
    next
}

/// Plays the on-sale and checks it.
pub async fn run(args: Args) -> anyhow::Result<Report> {
    let start = Instant::now();
    let wall0 = OffsetDateTime::now_utc();
    let stats = Arc::new(Stats::new(start, args.max_secs)?);
    let api = Api::new(
        &args.base_url,
        &args.admin_token,
        stats.clone(),
        args.max_inflight,
        Duration::from_secs(args.request_timeout_secs.max(1)),
    )?;
    let (concert, total_seats) = create_concert(&api, &args, wall0).await?;
    // The pre-queue's length counts from here: creating 50,000 seats may take seconds.
    let early = args.early_buyers();
    let prequeue_secs = early.div_ceil(args.join_rate.max(1)) + 2 * MARGIN_SECS + 1;
    let opening = Duration::from_secs(start.elapsed().as_secs() + 1 + prequeue_secs);
    stats.set_failover_windows(
        args.chaos
            .iter()
            .map(|(at, _)| {
                let from = opening + Duration::from_secs(*at);
                (from, from + Duration::from_secs(args.failover_window_secs))
            })
            .collect(),
    );
    let room = args.room_id.clone().unwrap_or_else(|| format!("onsale-{}", wall0.unix_timestamp()));
    let opens_at = wall0 + opening;
    let mut spec = json!({
        "id": room,
        "name": "The on-sale",
        "concertIds": [concert],
        "opensAt": rfc3339(opens_at)?,
        "prequeueOpensAt": rfc3339(wall0)?,
        "drawAtOpen": true,
        "abandonAfterSecs": args.abandon_after_secs,
        "admitBatch": args.admit_batch(),
        "admitIntervalSecs": args.admit_interval_secs,
        "activeTtlSecs": args.active_ttl_secs,
    });
    if args.abandon_after_secs == 0 {
        if let Some(o) = spec.as_object_mut() {
            o.remove("abandonAfterSecs");
        }
    }
    api.admin(Method::POST, "/admin/rooms", Some(spec)).await.context("creating the room")?;
    anyhow::ensure!(start.elapsed() + Duration::from_secs(MARGIN_SECS) < opening, "the set-up took too long");

    let (end_tx, end_rx) = watch::channel(false);
    let ctx = Arc::new(Ctx {
        api: api.clone(),
        room: room.clone(),
        concert: concert.clone(),
        seed: args.seed,
        salt: u64::try_from(wall0.unix_timestamp_nanos()).unwrap_or(0),
        abandon_span: Duration::from_secs(prequeue_secs + 30),
        end: end_rx.clone(),
        paid: AtomicU64::new(0),
    });

    // The monitor: samples, the draw, and the drain once sold out.
    let samples = Arc::new(Mutex::new(Vec::<Sample>::new()));
    let (draw_tx, mut draw_rx) = watch::channel(None::<Draw>);
    let monitor = {
        let (api, room, concert, samples, mut end) =
            (api.clone(), room.clone(), concert.clone(), samples.clone(), end_rx.clone());
        let drain = args.drain_batch();
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(Duration::from_secs(1));
            let mut drained = false;
            let mut room_view = Value::Null;
            loop {
                tokio::select! {
                    _ = tick.tick() => {}
                    _ = end.wait_for(|e| *e) => break,
                }
                let Ok(view) = api.admin(Method::GET, &format!("/admin/rooms/{room}"), None).await else { continue };
                if draw_tx.borrow().is_none() {
                    if let Some(d) = view.get("draw").filter(|d| !d.is_null()) {
                        let _ = draw_tx.send(Some(Draw { seed: u64_of(d, "seed"), entrants: u64_of(d, "entrants") }));
                    }
                }
                let sold = match api.admin(Method::GET, &format!("/admin/concerts/{concert}/sales"), None).await {
                    Ok(Value::Array(s)) => s.iter().map(|d| u64_of(d, "sold")).sum(),
                    _ => samples.lock().ok().and_then(|s| s.last().map(|l| l.sold)).unwrap_or(0),
                };
                if sold >= total_seats && !drained {
                    drained = api
                        .admin(Method::PATCH, &format!("/admin/rooms/{room}"), Some(json!({"admitBatch": drain})))
                        .await
                        .is_ok();
                }
                if let Ok(mut s) = samples.lock() {
                    s.push(Sample {
                        at: start.elapsed(),
                        waiting: u64_of(&view, "waiting"),
                        active: u64_of(&view, "active"),
                        sold,
                    });
                }
                room_view = view;
            }
            room_view
        })
    };

    // The chaos hooks.
    let chaos_runs = Arc::new(Mutex::new(Vec::new()));
    let mut chaos_tasks = Vec::new();
    for (at, cmd) in args.chaos.clone() {
        let runs = chaos_runs.clone();
        chaos_tasks.push(tokio::spawn(async move {
            tokio::time::sleep_until((start + opening + Duration::from_secs(at)).into()).await;
            let exit = chaos(cmd.clone()).await;
            if let Ok(mut r) = runs.lock() {
                r.push(ChaosRun { at_secs_after_opening: at, command: cmd, exit });
            }
        }));
    }

    let deadline = start + Duration::from_secs(args.max_secs);
    let mut stayers = Vec::new();
    let mut leavers = Vec::new();
    let prequeue_began = Instant::now();
    let stop_early = start + opening - Duration::from_secs(MARGIN_SECS);
    let spawned_early = spawn_buyers(&ctx, &args, 0, early, false, Some(stop_early), &mut stayers, &mut leavers).await;
    let prequeue_took = prequeue_began.elapsed();
    // Later joiners wait for the draw to be seen.
    let draw_seen = tokio::time::timeout_at(deadline.into(), draw_rx.wait_for(Option::is_some)).await.is_ok();
    if draw_seen {
        spawn_buyers(
            &ctx,
            &args,
            spawned_early,
            args.buyers - spawned_early,
            true,
            Some(deadline),
            &mut stayers,
            &mut leavers,
        )
        .await;
    }

    let mut records = Vec::with_capacity(usize::try_from(args.buyers).unwrap_or(0));
    let mut pending = stayers.into_iter();
    for h in pending.by_ref() {
        match tokio::time::timeout_at(deadline.into(), h).await {
            Ok(Ok(r)) => records.push(r),
            Ok(Err(e)) => anyhow::bail!("a buyer task failed: {e}"),
            Err(_) => break,
        }
    }
    let _ = end_tx.send(true);
    for h in pending.chain(leavers) {
        records.push(h.await.context("a buyer task failed")?);
    }
    let run_secs = start.elapsed().as_secs_f64();
    let room_view = monitor.await.unwrap_or(Value::Null);
    for t in chaos_tasks {
        t.abort();
    }
    let final_view = api.admin(Method::GET, &format!("/admin/rooms/{room}"), None).await.unwrap_or(room_view);
    let sales = api.admin(Method::GET, &format!("/admin/concerts/{concert}/sales"), None).await.unwrap_or(Value::Null);
    let draw = *draw_rx.borrow();
    let draw = draw.or_else(|| {
        final_view
            .get("draw")
            .filter(|d| !d.is_null())
            .map(|d| Draw { seed: u64_of(d, "seed"), entrants: u64_of(d, "entrants") })
    });

    // The figures.
    let order = check::order(&records, draw);
    let (lost_places, lost_examples) = check::lost(&records);
    let paid: Vec<&(String, i64)> = records.iter().filter_map(|r| r.paid.as_ref()).collect();
    let mut money = Money {
        seats: total_seats,
        payments: paid.len() as u64,
        distinct_seats: paid.iter().map(|p| p.0.as_str()).collect::<HashSet<_>>().len() as u64,
        paid_amount: paid.iter().map(|p| p.1).sum(),
        sold: sales.as_array().map_or(0, |s| s.iter().map(|d| u64_of(d, "sold")).sum()),
        revenue: sales.as_array().map_or(0, |s| s.iter().filter_map(|d| d.get("revenue")?.as_i64()).sum()),
        ..Money::default()
    };
    if let Some(db) = &args.database_url {
        let bin = match &args.concert_bin {
            Some(b) => b.clone(),
            None => std::env::current_exe()?.with_file_name("concert"),
        };
        let (cmd_bin, db) = (bin.clone(), db.clone());
        let out = tokio::task::spawn_blocking(move || {
            std::process::Command::new(&cmd_bin).arg("check-invariants").env("DATABASE_URL", db).output()
        })
        .await?
        .with_context(|| format!("running {} check-invariants", bin.display()))?;
        money.invariants_ok = Some(out.status.success());
        money.invariants_output = String::from_utf8_lossy(&out.stdout).trim().to_owned();
    }
    let opening_secs = opening.as_secs_f64();
    let last_sale = records.iter().filter_map(|r| r.paid_at).max();
    let sold_out = (money.sold >= total_seats && money.payments >= total_seats)
        .then(|| last_sale.map(|t| t.as_secs_f64() - opening_secs))
        .flatten();
    let joins_early: Vec<&Record> = records.iter().filter(|r| !r.late && r.token.is_some()).collect();
    let join_rate_held = joins_early.len() as f64 / prequeue_took.as_secs_f64().max(0.001);
    let still_waiting =
        records.iter().filter(|r| !r.abandoner && r.status.as_deref() == Some("WAITING")).count() as u64;
    let failures: Vec<&Record> = records.iter().filter(|r| r.failed.is_some()).collect();
    let abandoned_skipped =
        records.iter().filter(|r| r.abandoner && r.expired_reason.as_deref() == Some("ABANDONED")).count() as u64;
    let unexpected = stats.unexpected();
    let failover_answers: u64 = stats.answers().iter().filter(|a| matches!(a.1, 0 | 503)).map(|a| a.3).sum();

    let mut targets = vec![
        Target {
            name: "0 unexpected answers".into(),
            met: unexpected == 0,
            detail: format!(
                "{unexpected} unexpected; {failover_answers} 503/transport (expected only in a failover window)"
            ),
        },
        Target {
            name: "0 lost places".into(),
            met: lost_places == 0 && still_waiting == 0,
            detail: format!("{lost_places} lost, {still_waiting} staying buyers never admitted by the end"),
        },
        Target {
            name: "admissions exactly in drawn order".into(),
            met: order.met(),
            detail: format!(
                "{} entrants (draw: {}), {} + {} admissions over {} ticks, {} + {} out of order",
                order.prequeue_tokens,
                order.drawn_entrants,
                order.entrants_admitted,
                order.late_admitted,
                order.ticks,
                order.inversions,
                order.late_inversions
            ),
        },
        Target {
            name: "seats sold = payments = money taken".into(),
            met: money.sold == money.payments
                && money.distinct_seats == money.payments
                && money.revenue == money.paid_amount,
            detail: format!(
                "sold {}, payments {} ({} seats), revenue {} = paid {}",
                money.sold, money.payments, money.distinct_seats, money.revenue, money.paid_amount
            ),
        },
        Target {
            name: "sold out".into(),
            met: sold_out.is_some(),
            detail: sold_out.map_or_else(
                || format!("{} of {} seats sold", money.sold, total_seats),
                |s| format!("{total_seats} seats sold out {s:.1} s after the opening"),
            ),
        },
    ];
    if let Some(ok) = money.invariants_ok {
        targets.push(Target {
            name: "0 invariant violations".into(),
            met: ok,
            detail: money.invariants_output.lines().last().unwrap_or("").to_owned(),
        });
    }

    // The timeline.
    let secs = usize::try_from(start.elapsed().as_secs() + 1).unwrap_or(1);
    let mut timeline = Timeline {
        sold: stats.sold_per_sec(secs),
        errors: stats.errors_per_sec(secs),
        admitted: vec![0; secs],
        waiting: vec![0; secs],
        active: vec![0; secs],
        opening: Some(opening.as_secs()),
        chaos: args.chaos.iter().map(|(at, _)| opening.as_secs() + at).collect(),
        sold_out: sold_out.map(|s| (s + opening_secs) as u64),
    };
    for r in &records {
        if let Some(at) = r.activated_at {
            let off = (at - wall0).whole_seconds();
            if let Some(slot) = usize::try_from(off).ok().and_then(|i| timeline.admitted.get_mut(i)) {
                *slot += 1;
            }
        }
    }
    if let Ok(samples) = samples.lock() {
        let mut last = Sample::default();
        let mut it = samples.iter().peekable();
        for i in 0..secs {
            while let Some(s) = it.peek() {
                if s.at.as_secs() as usize > i {
                    break;
                }
                last = **s;
                it.next();
            }
            timeline.waiting[i] = last.waiting;
            timeline.active[i] = last.active;
        }
    }
    let chaos = chaos_runs.lock().map(|c| c.clone()).unwrap_or_default();
    let report = Report {
        base_url: args.base_url.clone(),
        room: room.clone(),
        buyers: args.buyers,
        late_buyers: records.iter().filter(|r| r.late).count() as u64,
        abandoning_buyers: records.iter().filter(|r| r.abandoner).count() as u64,
        run_secs,
        join_rate_target: args.join_rate,
        join_rate_held,
        steps: stats.summaries(),
        answers: stats
            .answers()
            .into_iter()
            .map(|(step, status, code, count)| AnswerCount { step: step.name().into(), status, code, count })
            .collect(),
        unexpected_answers: unexpected,
        sold_out_secs_after_opening: sold_out,
        bought: money.payments,
        found_sold_out: records.iter().filter(|r| r.sold_out).count() as u64,
        failed: failures.len() as u64,
        still_waiting,
        failures: failures.iter().take(5).filter_map(|r| r.failed.clone()).collect(),
        lost_places,
        lost_examples,
        abandoned_skipped,
        room_abandoned: u64_of(&final_view, "abandoned"),
        order,
        money,
        chaos,
        targets,
        timeline,
    };
    write_outputs(&args.json, &args.png, &report, &report.timeline)?;
    Ok(report)
}

fn write_outputs(json_path: &Path, png: &Path, report: &Report, timeline: &Timeline) -> anyhow::Result<()> {
    std::fs::write(json_path, serde_json::to_vec_pretty(report)?)
        .with_context(|| format!("writing {}", json_path.display()))?;
    let title = format!("on-sale: {} buyers, {} seats", report.buyers, report.money.seats);
    chart::draw(timeline, &title, png).with_context(|| format!("drawing {}", png.display()))?;
    Ok(())
}
