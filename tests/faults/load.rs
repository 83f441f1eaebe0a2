//! A recorded, payment-heavy load, and the audit that compares what clients were told with
//! what the database holds.
//!
//! Each simulated buyer loops: charge (sometimes), take a place in line and wait for
//! admission, hold a seat, pay; a payment refused for the balance is retried with the same
//! `Idempotency-Key` after a top-up. Every charge and payment carries a key, so every effect in
//! the database can be traced to the request that made it; every charge, payment and hold is
//! recorded with its answer (or its absence).
//!
//! The audit then holds the database to the answers:
//! - a key answered 2xx has its effect, once, with the very body the client got (the balance
//!   the client was told is the ledger's balance after that entry);
//! - a key answered only 4xx or 503 has no effect;
//! - a key that went unanswered has at most one;
//! - every ledger entry belongs to a key (no effect without a request that asked for it);
//! - every hold answered 201 exists, and every reservation is one answered 201 or one that
//!   went unanswered or was answered 500 (its COMMIT lost with the database: outcome unknown);
//! - each user's balance is the last ledger entry's, and `concert check-invariants` passes.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use diesel::PgConnection;
use serde_json::{json, Value};
use uuid::Uuid;

use crate::harness::{rand_hex, rows, Answer, Api, Req, Rng};

/// What a recorded request did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Op {
    Charge { amount: i64 },
    Pay { reservation: String },
    Hold { seat: String },
}

/// One request and what it got.
#[derive(Debug, Clone)]
pub struct Rec {
    pub user: String,
    pub op: Op,
    pub req: Req,
    pub answer: Answer,
    /// When it was sent, from the load's start.
    pub sent: Duration,
    /// Which phase of the test it belongs to (set by the test through [`Load::phase`]).
    pub phase: usize,
}

impl Rec {
    pub fn key(&self) -> Option<&str> {
        self.req.key.as_deref()
    }
}

/// The seats buyers hold, handed out one at a time so buyers rarely collide.
pub struct Seats {
    pub schedule: String,
    pub seats: Vec<(String, i64)>,
    next: AtomicUsize,
}

impl Seats {
    pub fn new(schedule: String, seats: Vec<(String, i64)>) -> Self {
        Self { schedule, seats, next: AtomicUsize::new(0) }
    }

    fn take(&self) -> Option<&(String, i64)> {
        self.seats.get(self.next.fetch_add(1, Ordering::Relaxed))
    }
}

/// A running load: buyers on their own threads until [`Load::stop`].
pub struct Load {
    stop: Arc<AtomicBool>,
    phase: Arc<AtomicUsize>,
    threads: Vec<std::thread::JoinHandle<Vec<Rec>>>,
    pub users: Vec<String>,
    pub started: Instant,
}

/// How the buyers behave.
#[derive(Debug, Clone, Copy)]
pub struct Shape {
    pub buyers: usize,
    /// Pause between a buyer's steps (keeps a 2-core machine shared).
    pub think: Duration,
}

impl Load {
    pub fn start(api: &Arc<Api>, seats: &Arc<Seats>, shape: Shape) -> Self {
        let stop = Arc::new(AtomicBool::new(false));
        let phase = Arc::new(AtomicUsize::new(0));
        let started = Instant::now();
        let users: Vec<String> = (0..shape.buyers).map(|_| Uuid::new_v4().to_string()).collect();
        let threads = users
            .iter()
            .map(|user| {
                let buyer = Buyer {
                    api: api.clone(),
                    seats: seats.clone(),
                    user: user.clone(),
                    stop: stop.clone(),
                    phase: phase.clone(),
                    started,
                    think: shape.think,
                    rng: Rng::new(),
                    recs: Vec::new(),
                    token: None,
                    debt: None,
                };
                std::thread::spawn(move || buyer.run())
            })
            .collect();
        Self { stop, phase, threads, users, started }
    }

    /// Marks the requests sent from now on as belonging to phase `n`.
    pub fn phase(&self, n: usize) {
        self.phase.store(n, Ordering::SeqCst);
    }

    /// Stops the buyers (each finishes its current request) and returns every record.
    pub fn stop(self) -> Vec<Rec> {
        self.stop.store(true, Ordering::SeqCst);
        let mut all = Vec::new();
        for t in self.threads {
            all.extend(t.join().expect("a buyer thread panicked"));
        }
        all.sort_by_key(|r| r.sent);
        all
    }
}

struct Buyer {
    api: Arc<Api>,
    seats: Arc<Seats>,
    user: String,
    stop: Arc<AtomicBool>,
    phase: Arc<AtomicUsize>,
    started: Instant,
    think: Duration,
    rng: Rng,
    recs: Vec<Rec>,
    token: Option<String>,
    /// A payment refused for the balance, to retry with its key after a top-up.
    debt: Option<Req>,
}

impl Buyer {
    fn stopped(&self) -> bool {
        self.stop.load(Ordering::SeqCst)
    }

    fn record(&mut self, op: Op, req: Req) -> Answer {
        let sent = self.started.elapsed();
        let phase = self.phase.load(Ordering::SeqCst);
        let answer = self.api.send(&req);
        self.recs.push(Rec { user: self.user.clone(), op, req, answer: answer.clone(), sent, phase });
        if answer.status.is_none() {
            // The server is gone: do not hammer its port while it comes back.
            std::thread::sleep(Duration::from_millis(100));
        }
        answer
    }

    fn charge(&mut self, amount: i64) -> Answer {
        let req = charge_req(&self.user, amount);
        self.record(Op::Charge { amount }, req)
    }

    /// A token that is ACTIVE, or `None` if the service cannot give one right now.
    fn ensure_token(&mut self) -> Option<String> {
        if self.token.is_none() {
            let a = self.api.send(&Req::post("/queue/tokens", json!({ "userId": self.user })));
            if !a.ok() {
                return None;
            }
            self.token = a.body["token"].as_str().map(str::to_owned);
        }
        let token = self.token.clone()?;
        let deadline = Instant::now() + Duration::from_secs(5);
        while !self.stopped() && Instant::now() < deadline {
            let a = self.api.send(&Req::get("/queue/token").bearer(&token));
            match a.body["status"].as_str() {
                Some("ACTIVE") => return Some(token),
                Some("EXPIRED") => {
                    self.token = None;
                    return None;
                }
                _ => std::thread::sleep(Duration::from_millis(100)),
            }
        }
        None
    }

    fn pay(&mut self, req: Req, reservation: String) {
        let a = self.record(Op::Pay { reservation }, req.clone());
        match (a.status, a.code()) {
            // The token is used up by a payment (and would be by a lost one that committed).
            (Some(201), _) | (Some(401), _) | (None, _) => self.token = None,
            (Some(402), _) => self.debt = Some(req),
            _ => {}
        }
    }

    fn run(mut self) -> Vec<Rec> {
        while !self.stopped() {
            std::thread::sleep(self.think);
            if let Some(req) = self.debt.take() {
                // Top up, then the same payment with the same key: a 402 recorded nothing. Only
                // while the token that was refused is still the one in hand.
                self.charge(4_000);
                if req.bearer.is_some() && req.bearer == self.token {
                    let reservation =
                        req.body.as_ref().and_then(|b| b["reservationId"].as_str()).unwrap_or_default().to_owned();
                    self.pay(req, reservation);
                }
                continue;
            }
            if self.rng.chance(0.6) {
                let amount = self.rng.range(500, 3_500);
                self.charge(amount);
            }
            let Some(token) = self.ensure_token() else {
                std::thread::sleep(Duration::from_millis(100));
                continue;
            };
            let Some((seat, _price)) = self.seats.take().cloned() else {
                std::thread::sleep(Duration::from_millis(100));
                continue;
            };
            let hold =
                Req::post("/reservations", json!({ "scheduleId": self.seats.schedule, "seatId": seat })).bearer(&token);
            let a = self.record(Op::Hold { seat }, hold);
            if a.is(401) {
                self.token = None;
            }
            let Some(reservation) = a.body["id"].as_str().filter(|_| a.is(201)).map(str::to_owned) else { continue };
            let pay = pay_req(&token, &reservation);
            self.pay(pay, reservation);
        }
        self.recs
    }
}

/// Sends one request outside a [`Load`] and records it like a buyer would.
pub fn send_recorded(api: &Api, user: &str, op: Op, req: Req, started: Instant, phase: usize) -> Rec {
    let sent = started.elapsed();
    let answer = api.send(&req);
    Rec { user: user.to_owned(), op, req, answer, sent, phase }
}

/// A keyed charge request.
pub fn charge_req(user: &str, amount: i64) -> Req {
    Req::post(format!("/users/{user}/balance/charge"), json!({ "amount": amount }))
        .key(&format!("charge-{}", rand_hex(12)))
}

/// A keyed payment request.
pub fn pay_req(token: &str, reservation: &str) -> Req {
    Req::post("/payments", json!({ "reservationId": reservation })).bearer(token).key(&format!("pay-{}", rand_hex(12)))
}

// ---- retries of the unanswered ------------------------------------------------------------

/// Sends every keyed request that went unanswered (or was answered 500: outcome unknown) again,
/// twice, with its key: the first
/// retry finds the outcome (a replay if it had committed, else a fresh run), the second must
/// replay the first if that one succeeded. Returns the retries' records (phase `phase`).
pub fn retry_unanswered(api: &Api, recs: &[Rec], phase: usize, started: Instant) -> Vec<Rec> {
    let answered_ok: HashSet<(&str, &str)> =
        recs.iter().filter(|r| r.answer.ok()).filter_map(|r| Some((r.user.as_str(), r.key()?))).collect();
    let mut out = Vec::new();
    // A 500 is an unknown outcome too (a COMMIT whose connection died before its answer).
    for r in recs.iter().filter(|r| (r.answer.status.is_none() || r.answer.is(500)) && r.key().is_some()) {
        let key = r.key().unwrap_or_default();
        if answered_ok.contains(&(r.user.as_str(), key)) {
            continue;
        }
        for _ in 0..2 {
            let sent = started.elapsed();
            let answer = api.send(&r.req);
            out.push(Rec { user: r.user.clone(), op: r.op.clone(), req: r.req.clone(), answer, sent, phase });
        }
    }
    out
}

/// Sends every keyed request that was answered 503 (and never 2xx) again, once, with its key:
/// a 503 recorded nothing, so the retry runs afresh and is never a replay. Returns the retries'
/// records (phase `phase`); panics on a replay.
pub fn retry_unavailable(api: &Api, recs: &[Rec], phase: usize, started: Instant) -> Vec<Rec> {
    let answered_ok: HashSet<(&str, &str)> =
        recs.iter().filter(|r| r.answer.ok()).filter_map(|r| Some((r.user.as_str(), r.key()?))).collect();
    let mut seen = HashSet::new();
    let mut out = Vec::new();
    for r in recs.iter().filter(|r| r.answer.is(503) && r.key().is_some()) {
        let key = r.key().unwrap_or_default();
        if answered_ok.contains(&(r.user.as_str(), key)) || !seen.insert((r.user.as_str(), key)) {
            continue;
        }
        let sent = started.elapsed();
        let answer = api.send(&r.req);
        assert!(!answer.replayed, "a retry of a request answered 503 was a replay: the 503 had an effect: {r:?}");
        out.push(Rec { user: r.user.clone(), op: r.op.clone(), req: r.req.clone(), answer, sent, phase });
    }
    out
}

// ---- the audit ---------------------------------------------------------------------------------

/// Figures of one audit, for the test's report.
#[derive(Debug, Default)]
pub struct Tally {
    pub requests: usize,
    pub ok: usize,
    pub refused: usize,
    pub unavailable: usize,
    pub unanswered: usize,
    pub other: BTreeMap<u16, usize>,
    pub charges_committed: usize,
    pub payments_committed: usize,
    pub unanswered_committed: usize,
}

impl std::fmt::Display for Tally {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} requests: {} 2xx, {} 4xx, {} 503, {} unanswered (keys with an effect in the database: {}), \
             other {:?}; database: {} charges, {} payments",
            self.requests,
            self.ok,
            self.refused,
            self.unavailable,
            self.unanswered,
            self.unanswered_committed,
            self.other,
            self.charges_committed,
            self.payments_committed
        )
    }
}

/// Counts answers by class.
pub fn tally(recs: &[Rec]) -> Tally {
    let mut t = Tally { requests: recs.len(), ..Tally::default() };
    for r in recs {
        match r.answer.status {
            None => t.unanswered += 1,
            Some(200..=299) => t.ok += 1,
            Some(503) => t.unavailable += 1,
            Some(s @ 400..=499) => {
                t.refused += 1;
                let _ = s;
            }
            Some(s) => *t.other.entry(s).or_default() += 1,
        }
    }
    t
}

struct KeyRecord {
    status: String,
    body: String,
    entry: String,
}

struct Entry {
    user: String,
    kind: String,
    amount: i64,
    balance_after: i64,
    payment: String,
}

/// Holds the database to every answer in `recs` (see the module docs); returns the violations
/// (empty: consistent) and the figures.
pub fn audit(conn: &mut PgConnection, api: &Api, db_url: &str, recs: &[Rec], users: &[String]) -> (Vec<String>, Tally) {
    let mut problems = Vec::new();
    let mut t = tally(recs);
    let users_sql = users.iter().map(|u| format!("'{u}'")).collect::<Vec<_>>().join(",");
    let keys: HashMap<(String, String), KeyRecord> = rows(
        conn,
        &format!(
            "SELECT user_id, key, status, body, ledger_entry_id FROM idempotency_keys WHERE user_id IN ({users_sql})"
        ),
        5,
    )
    .into_iter()
    .map(|r| {
        ((r[0].clone(), r[1].clone()), KeyRecord { status: r[2].clone(), body: r[3].clone(), entry: r[4].clone() })
    })
    .collect();
    let entries: HashMap<String, Entry> = rows(
        conn,
        &format!(
            "SELECT id, user_id, kind, amount, balance_after, payment_id FROM ledger_entries WHERE user_id IN ({users_sql})"
        ),
        6,
    )
    .into_iter()
    .map(|r| {
        (
            r[0].clone(),
            Entry {
                user: r[1].clone(),
                kind: r[2].clone(),
                amount: r[3].parse().unwrap_or(0),
                balance_after: r[4].parse().unwrap_or(-1),
                payment: r[5].clone(),
            },
        )
    })
    .collect();
    let payments: HashMap<String, (String, String)> = rows(
        conn,
        &format!(
            "SELECT p.id, p.reservation_id, r.status FROM payments p JOIN reservations r ON r.id = p.reservation_id \
             WHERE p.user_id IN ({users_sql})"
        ),
        3,
    )
    .into_iter()
    .map(|r| (r[0].clone(), (r[1].clone(), r[2].clone())))
    .collect();
    let reservations: Vec<Vec<String>> =
        rows(conn, &format!("SELECT id, user_id, seat_id FROM reservations WHERE user_id IN ({users_sql})"), 3);
    t.charges_committed = entries.values().filter(|e| e.kind == "CHARGE").count();
    t.payments_committed = payments.len();

    // Keyed requests, grouped by (user, key), in the order they were sent.
    let mut by_key: BTreeMap<(String, String), Vec<&Rec>> = BTreeMap::new();
    for r in recs {
        if let Some(k) = r.key() {
            by_key.entry((r.user.clone(), k.to_owned())).or_default().push(r);
        }
    }
    for ((user, key), attempts) in &by_key {
        let record = keys.get(&(user.clone(), key.clone()));
        let oks: Vec<&&Rec> = attempts.iter().filter(|r| r.answer.ok()).collect();
        let lost = attempts.iter().filter(|r| r.answer.status.is_none()).count();
        let statuses: Vec<Option<u16>> = attempts.iter().map(|r| r.answer.status).collect();
        if lost > 0 && record.is_some() {
            t.unanswered_committed += 1;
        }
        let Some(first_ok) = oks.first() else {
            if lost == 0 {
                if let Some(rec) = record {
                    problems.push(format!(
                        "key {key} of user {user} was answered only {statuses:?} but has an effect (recorded {} {})",
                        rec.status, rec.body
                    ));
                }
            }
            continue;
        };
        for later in &oks[1..] {
            if later.answer.status != first_ok.answer.status || later.answer.body != first_ok.answer.body {
                problems.push(format!(
                    "key {key}: two different 2xx answers: {} then {}",
                    first_ok.answer.body, later.answer.body
                ));
            }
            if !later.answer.replayed {
                problems.push(format!("key {key}: a second 2xx without Idempotent-Replayed: true"));
            }
        }
        let Some(rec) = record else {
            problems.push(format!("key {key} of user {user} was answered {statuses:?} but has no effect"));
            continue;
        };
        let told = &first_ok.answer.body;
        let stored: Value = serde_json::from_str(&rec.body).unwrap_or(Value::Null);
        if rec.status != first_ok.answer.status.unwrap_or(0).to_string() || &stored != told {
            problems.push(format!("key {key}: told {told}, recorded {} {}", rec.status, rec.body));
        }
        let Some(entry) = entries.get(&rec.entry) else {
            problems.push(format!("key {key}: its ledger entry {} is missing", rec.entry));
            continue;
        };
        if Some(entry.balance_after) != told["balance"].as_i64() {
            problems.push(format!(
                "key {key}: the client was told balance {} but the ledger says {} after that entry",
                told["balance"], entry.balance_after
            ));
        }
        match &first_ok.op {
            Op::Charge { amount } => {
                if entry.kind != "CHARGE" || entry.amount != *amount {
                    problems.push(format!("key {key}: charge of {amount} recorded as {} {}", entry.kind, entry.amount));
                }
            }
            Op::Pay { reservation } => {
                let id = told["id"].as_str().unwrap_or_default();
                match payments.get(id) {
                    Some((res, status)) if res == reservation && status == "PAID" && entry.payment == id => {}
                    other => problems.push(format!(
                        "key {key}: payment {id} of reservation {reservation} told 201 but the database has {other:?} \
                         (ledger entry payment {})",
                        entry.payment
                    )),
                }
            }
            Op::Hold { .. } => {}
        }
    }

    // No effect without a key that asked for it.
    let mut keyed_entries: HashMap<&str, usize> = HashMap::new();
    for rec in keys.values() {
        *keyed_entries.entry(rec.entry.as_str()).or_default() += 1;
    }
    for (id, e) in &entries {
        match keyed_entries.get(id.as_str()) {
            Some(1) => {}
            n => problems.push(format!(
                "ledger entry {id} ({} {} of user {}) is referenced by {n:?} idempotency records",
                e.kind, e.amount, e.user
            )),
        }
    }

    // Holds: every 201 exists; every reservation is a 201, an unanswered hold or a hold answered 500.
    let held: HashSet<&str> = recs
        .iter()
        .filter(|r| matches!(r.op, Op::Hold { .. }) && r.answer.is(201))
        .filter_map(|r| r.answer.body["id"].as_str())
        .collect();
    // A hold answered 500 had its COMMIT on the way when the database died: it may exist.
    let lost_holds: HashSet<(&str, &str)> = recs
        .iter()
        .filter(|r| r.answer.status.is_none() || r.answer.is(500))
        .filter_map(|r| match &r.op {
            Op::Hold { seat } => Some((r.user.as_str(), seat.as_str())),
            _ => None,
        })
        .collect();
    let in_db: HashSet<&str> = reservations.iter().map(|r| r[0].as_str()).collect();
    for id in &held {
        if !in_db.contains(id) {
            problems.push(format!("reservation {id} was answered 201 but does not exist"));
        }
    }
    for r in &reservations {
        if !held.contains(r[0].as_str()) && !lost_holds.contains(&(r[1].as_str(), r[2].as_str())) {
            problems.push(format!(
                "reservation {} of user {} on seat {} exists but no hold was answered 201 or went unanswered for it",
                r[0], r[1], r[2]
            ));
        }
    }

    // Balances: what the API says now is the last ledger entry's.
    let mut last: HashMap<String, i64> = HashMap::new();
    for r in rows(
        conn,
        &format!(
            "SELECT DISTINCT ON (user_id) user_id, balance_after FROM ledger_entries WHERE user_id IN ({users_sql}) \
             ORDER BY user_id, entry_no DESC"
        ),
        2,
    ) {
        last.insert(r[0].clone(), r[1].parse().unwrap_or(-1));
    }
    for u in users {
        let a = api.send(&Req::get(format!("/users/{u}/balance")));
        let want = last.get(u).copied().unwrap_or(0);
        if a.body["balance"].as_i64() != Some(want) {
            problems.push(format!("user {u}: GET balance answered {a:?}, the ledger ends at {want}"));
        }
    }

    let out = crate::support::run_command("check-invariants", db_url);
    if !out.status.success() {
        problems.push(format!("check-invariants: {}", String::from_utf8_lossy(&out.stdout)));
    }
    (problems, t)
}

/// Panics listing the first violations, if any.
pub fn assert_clean(what: &str, problems: &[String]) {
    assert!(
        problems.is_empty(),
        "{what}: {} violation(s):\n{}",
        problems.len(),
        problems.iter().take(25).cloned().collect::<Vec<_>>().join("\n")
    );
}
