//! One buyer, as a tokio task: join, wait by polling at the `pollAfterSecs` the service gives,
//! then, once admitted, find a date with seats left, read its seat map, hold a seat (most buyers
//! go for the best, lowest-numbered ones: the contention of a real sale), charge the balance
//! with the price and pay, retrying with another seat on 409.
//!
//! A task is a timer in tokio's wheel between its requests and holds no thread: a buyer's whole
//! state is its task's future, under 1.5 KB (a test bounds it), because request futures and
//! the shopping part are boxed only while they run; 200,000 waiting buyers take some 300 MB. Every buyer's choices come from a
//! generator seeded by the run's seed and the buyer's index, so one seed replays one crowd.
//!
//! Retries: a 503 or a transport failure (a killed instance, a failing-over Redis master) is
//! retried after `Retry-After` (or half a second) with the same request; a join retried this
//! way gets the user's existing token (one place per user and room), a charge and a payment
//! carry an `Idempotency-Key`, so a retry of a request whose answer was lost never does it twice.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use reqwest::Method;
use serde_json::{json, Value};
use time::format_description::well_known::Rfc3339;
use time::OffsetDateTime;
use tokio::sync::watch;

use crate::api::{Answer, Api, Req};
use crate::stats::Step;

/// Most 503/transport retries of one request before the buyer gives up on it.
const MAX_RETRIES: u32 = 60;
/// Most rounds of (dates, seat map, hold) one admitted buyer tries before giving up.
const MAX_ROUNDS: u32 = 30;
/// Share of buyers who go for the best seats (the others take any available seat).
const BEST_SEEKERS: f64 = 0.8;

/// What every buyer shares.
#[derive(Debug)]
pub struct Ctx {
    /// The service.
    pub api: Api,
    /// The room of the on-sale.
    pub room: String,
    /// The concert on sale.
    pub concert: String,
    /// The run's seed.
    pub seed: u64,
    /// Mixed into the ids the buyers make (user ids, idempotency keys), so that two runs with
    /// one seed make the same choices but never reuse a user's key.
    pub salt: u64,
    /// Longest silence before an abandoning buyer stops polling, from its join.
    pub abandon_span: Duration,
    /// Turns true when the run is over (deadline, or every staying buyer done).
    pub end: watch::Receiver<bool>,
    /// Payments made (201), to note the moment of the last seat.
    pub paid: AtomicU64,
}

/// What happened to one buyer, for the checks.
#[derive(Debug, Clone, Default)]
pub struct Record {
    /// The buyer's index (its seed).
    pub idx: u64,
    /// Joined after the opening.
    pub late: bool,
    /// Stops polling at some point.
    pub abandoner: bool,
    /// The queue token, once joined.
    pub token: Option<String>,
    /// The join answered `"position": null` (the pre-queue: an entrant of the draw).
    pub prequeue: bool,
    /// When the (first) join request was sent and its answer received, since the start.
    pub join_sent: Option<Duration>,
    /// See `join_sent`.
    pub join_recv: Option<Duration>,
    /// When the service admitted the token (`activatedAt`), once known.
    pub activated_at: Option<OffsetDateTime>,
    /// The last status seen and its `expiredReason`.
    pub status: Option<String>,
    /// See `status`.
    pub expired_reason: Option<String>,
    /// A shown position larger than an earlier one (never allowed).
    pub position_grew: bool,
    /// Why the place was lost (a staying buyer's token skipped, unknown, or expired unadmitted).
    pub lost: Option<String>,
    /// Why the buyer stopped on an answer it could not go on from.
    pub failed: Option<String>,
    /// Found no seat left on any date.
    pub sold_out: bool,
    /// The seat bought and the amount paid.
    pub paid: Option<(String, i64)>,
    /// The reservation paid.
    pub reservation: Option<String>,
    /// When the payment's 201 came, since the start.
    pub paid_at: Option<Duration>,
}

/// Whether buyer `idx` abandons: decided by its own generator, so the spawner knows it
/// before the buyer runs.
pub fn abandons(seed: u64, idx: u64, share: f64) -> bool {
    rng_of(seed, idx).random_bool(share.clamp(0.0, 1.0))
}

/// Buyer `idx`'s generator for `stream`: 0 whether it abandons and when, 1 its choices when
/// shopping. Made afresh where needed rather than kept: a waiting buyer's task then holds no
/// generator state (a ChaCha block buffer is a few hundred bytes, times 200,000).
fn rng_of(seed: u64, idx: u64) -> ChaCha8Rng {
    rng_stream(seed, idx, 0)
}

fn rng_stream(seed: u64, idx: u64, stream: u64) -> ChaCha8Rng {
    let mut rng = ChaCha8Rng::seed_from_u64(seed ^ idx.wrapping_mul(0x9E37_79B9_7F4A_7C15));
    rng.set_stream(stream);
    rng
}

/// A random (version 4) UUID from `ids`.
fn new_id(ids: &mut ChaCha8Rng) -> String {
    uuid::Builder::from_random_bytes(ids.random()).into_uuid().to_string()
}

fn ended(ctx: &Ctx) -> bool {
    *ctx.end.borrow()
}

/// Sends `req` until it gets an answer other than 503/transport failure, or the retries or
/// the run run out.
async fn retrying<'a>(ctx: &'a Ctx, make: impl Fn() -> Req<'a>) -> Answer {
    let mut tries = 0;
    loop {
        let a = ctx.api.send(make()).await;
        tries += 1;
        if !a.retryable() || tries >= MAX_RETRIES || ended(ctx) {
            return a;
        }
        tokio::time::sleep(a.backoff()).await;
    }
}

fn str_of(v: &Value, field: &str) -> Option<String> {
    v.get(field).and_then(Value::as_str).map(str::to_owned)
}

fn note_token(rec: &mut Record, body: &Value) {
    rec.status = str_of(body, "status");
    rec.expired_reason = str_of(body, "expiredReason");
    if let Some(at) = body.get("activatedAt").and_then(Value::as_str) {
        rec.activated_at = OffsetDateTime::parse(at, &Rfc3339).ok();
    }
}

/// Plays buyer `idx` to its end.
pub async fn run(ctx: Arc<Ctx>, idx: u64, late: bool, abandoner: bool) -> Record {
    let mut rec = Record { idx, late, abandoner, ..Record::default() };
    // Ids come from the run's salt: stream 0 the user, stream 1 the idempotency keys.
    let user = new_id(&mut rng_stream(ctx.salt, idx, 0));
    let start = ctx.api.stats().start();

    rec.join_sent = Some(start.elapsed());
    let join_body = json!({"userId": user, "roomId": ctx.room});
    let a = retrying(&ctx, || Req {
        step: Step::Join,
        method: Method::POST,
        path: "/queue/tokens".into(),
        bearer: None,
        body: Some(join_body.clone()),
        key: None,
    })
    .await;
    rec.join_recv = Some(start.elapsed());
    if !matches!(a.status, 200 | 201) {
        rec.failed = Some(format!("join: {} {}", a.status, a.code));
        return rec;
    }
    let Some(token) = str_of(&a.body, "token") else {
        rec.failed = Some("join: no token in the answer".into());
        return rec;
    };
    rec.token = Some(token.clone());
    rec.prequeue = a.body.get("position").is_some_and(Value::is_null);
    let abandon_at = abandoner.then(|| {
        let mut rng = rng_of(ctx.seed, idx);
        let _ = rng.random_bool(0.5); // the draw `abandons` made
        let span = u64::try_from(ctx.abandon_span.as_millis()).unwrap_or(u64::MAX).max(1);
        Instant::now() + Duration::from_millis(rng.random_range(0..span))
    });

    let mut body = a.body;
    let mut last_position: Option<i64> = None;
    loop {
        note_token(&mut rec, &body);
        match rec.status.as_deref() {
            Some("ACTIVE") => break,
            Some("WAITING") => {}
            other => {
                if !abandoner {
                    rec.lost =
                        Some(format!("token {} ({:?}) before admission", other.unwrap_or("?"), rec.expired_reason));
                }
                return rec;
            }
        }
        if let Some(p) = body.get("position").and_then(Value::as_i64) {
            if last_position.is_some_and(|l| p > l) {
                rec.position_grew = true;
            }
            last_position = Some(p);
        }
        let wait = Duration::from_secs(body.get("pollAfterSecs").and_then(Value::as_u64).unwrap_or(1).clamp(1, 60));
        if abandon_at.is_some_and(|at| Instant::now() + wait >= at) {
            return abandoned(&ctx, rec, &token).await;
        }
        let mut end = ctx.end.clone();
        tokio::select! {
            () = tokio::time::sleep(wait) => {}
            _ = end.wait_for(|e| *e) => return rec,
        }
        let a = retrying(&ctx, || Req {
            step: Step::Poll,
            method: Method::GET,
            path: "/queue/token".into(),
            bearer: Some(&token),
            body: None,
            key: None,
        })
        .await;
        match a.status {
            200 => body = a.body,
            401 if a.code == "TOKEN_INVALID" => {
                rec.lost = Some("token unknown (TOKEN_INVALID) while waiting".into());
                return rec;
            }
            _ => {
                rec.failed = Some(format!("poll: {} {}", a.status, a.code));
                return rec;
            }
        }
    }
    // Boxed: only the admitted few at a time carry a shopping buyer's larger state.
    Box::pin(shop(&ctx, &mut rec, &user, &token)).await;
    rec
}

/// An abandoning buyer: silent until the run is over, then one last look at its token, so the
/// checks know whether its place was skipped or it was admitted while still present.
async fn abandoned(ctx: &Ctx, mut rec: Record, token: &str) -> Record {
    let mut end = ctx.end.clone();
    let _ = end.wait_for(|e| *e).await;
    let a = retrying(ctx, || Req {
        step: Step::Poll,
        method: Method::GET,
        path: "/queue/token".into(),
        bearer: Some(token),
        body: None,
        key: None,
    })
    .await;
    if a.status == 200 {
        note_token(&mut rec, &a.body);
    }
    rec
}

/// An index in `0..len` skewed toward 0: the best seats, the first dates.
fn skewed(rng: &mut ChaCha8Rng, len: usize) -> usize {
    let u: f64 = rng.random();
    ((len as f64) * u * u * u).floor().min((len.saturating_sub(1)) as f64) as usize
}

/// An admitted buyer goes for a seat until it pays, finds every date sold out, or gives up.
async fn shop(ctx: &Ctx, rec: &mut Record, user: &str, token: &str) {
    let (rng, ids) = (&mut rng_stream(ctx.seed, rec.idx, 1), &mut rng_stream(ctx.salt, rec.idx, 1));
    for _ in 0..MAX_ROUNDS {
        if ended(ctx) {
            rec.failed = Some("run ended while shopping".into());
            return;
        }
        let a = retrying(ctx, || Req {
            step: Step::Schedules,
            method: Method::GET,
            path: format!("/concerts/{}/schedules", ctx.concert),
            bearer: Some(token),
            body: None,
            key: None,
        })
        .await;
        if a.status != 200 {
            rec.failed = Some(format!("schedules: {} {}", a.status, a.code));
            return;
        }
        let open: Vec<String> = a
            .body
            .as_array()
            .map(|s| {
                s.iter()
                    .filter(|d| d.get("availableSeats").and_then(Value::as_i64).unwrap_or(0) > 0)
                    .filter_map(|d| str_of(d, "id"))
                    .collect()
            })
            .unwrap_or_default();
        if open.is_empty() {
            rec.sold_out = true;
            return;
        }
        let schedule = open[skewed(rng, open.len())].clone();
        let a = retrying(ctx, || Req {
            step: Step::Seats,
            method: Method::GET,
            path: format!("/schedules/{schedule}/seats"),
            bearer: Some(token),
            body: None,
            key: None,
        })
        .await;
        if a.status != 200 {
            rec.failed = Some(format!("seats: {} {}", a.status, a.code));
            return;
        }
        let mut available: Vec<(String, i64)> = a
            .body
            .as_array()
            .map(|s| {
                s.iter()
                    .filter(|seat| seat.get("status").and_then(Value::as_str) == Some("AVAILABLE"))
                    .filter_map(|seat| Some((str_of(seat, "id")?, seat.get("price")?.as_i64()?)))
                    .collect()
            })
            .unwrap_or_default();
        // A map lists seats by number: index 0 is the best seat.
        let best_seeker = rng.random_bool(BEST_SEEKERS);
        let mut held = None;
        for _ in 0..3 {
            if available.is_empty() {
                break;
            }
            let i = if best_seeker { skewed(rng, available.len()) } else { rng.random_range(0..available.len()) };
            let (seat, price) = available.remove(i);
            let body = json!({"scheduleId": schedule, "seatId": seat});
            let a = retrying(ctx, || Req {
                step: Step::Hold,
                method: Method::POST,
                path: "/reservations".into(),
                bearer: Some(token),
                body: Some(body.clone()),
                key: None,
            })
            .await;
            match (a.status, a.code.as_str()) {
                (201, _) => {
                    if let Some(id) = str_of(&a.body, "id") {
                        held = Some((id, seat, price));
                    }
                    break;
                }
                (409, "SEAT_UNAVAILABLE") => {}
                (409, "HOLD_LIMIT") => tokio::time::sleep(Duration::from_secs(1)).await,
                _ => {
                    rec.failed = Some(format!("hold: {} {}", a.status, a.code));
                    return;
                }
            }
        }
        let Some((reservation, seat, price)) = held else { continue };

        let charge_key = new_id(ids);
        let charge = json!({"amount": price});
        let a = retrying(ctx, || Req {
            step: Step::Charge,
            method: Method::POST,
            path: format!("/users/{user}/balance/charge"),
            bearer: None,
            body: Some(charge.clone()),
            key: Some(&charge_key),
        })
        .await;
        if a.status != 200 {
            rec.failed = Some(format!("charge: {} {}", a.status, a.code));
            return;
        }

        let pay_key = new_id(ids);
        let pay = json!({"reservationId": reservation});
        let a = retrying(ctx, || Req {
            step: Step::Pay,
            method: Method::POST,
            path: "/payments".into(),
            bearer: Some(token),
            body: Some(pay.clone()),
            key: Some(&pay_key),
        })
        .await;
        match (a.status, a.code.as_str()) {
            (201, _) => {
                let amount = a.body.get("amount").and_then(Value::as_i64).unwrap_or(0);
                rec.paid = Some((seat, amount));
                rec.reservation = Some(reservation);
                rec.paid_at = Some(ctx.api.stats().start().elapsed());
                ctx.api.stats().sold(Instant::now());
                ctx.paid.fetch_add(1, Ordering::Relaxed);
                return;
            }
            (409, "HOLD_EXPIRED") => {}
            _ => {
                rec.failed = Some(format!("pay: {} {}", a.status, a.code));
                return;
            }
        }
    }
    rec.failed = Some(format!("no seat after {MAX_ROUNDS} rounds"));
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::stats::Stats;

    /// A waiting buyer costs little: its task's future (all its state between requests) stays
    /// small, because request futures are boxed and generators made afresh where needed.
    #[test]
    fn a_buyer_task_is_small() {
        let stats = Arc::new(Stats::new(Instant::now(), 10).unwrap());
        let api = Api::new("http://127.0.0.1:9", "x", stats, 1, Duration::from_secs(1)).unwrap();
        let (_tx, end) = watch::channel(false);
        let ctx = Arc::new(Ctx {
            api,
            room: "r".into(),
            concert: "c".into(),
            seed: 1,
            salt: 2,
            abandon_span: Duration::from_secs(1),
            end,
            paid: AtomicU64::new(0),
        });
        let size = std::mem::size_of_val(&run(ctx, 0, false, false));
        assert!(size <= 1536, "a buyer's future is {size} bytes");
    }
}
